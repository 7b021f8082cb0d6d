"""Request bodies of the products service (``/products``, ``/products/{id}``, ``/products/{id}/stock``).

Money is integer minor units plus an ISO 4217 currency code; floats are refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
MAX_PRICE = 10**12  # minor units: ten billion in a two-decimal currency
MAX_STOCK = 10**9
MAX_STOCK_DELTA = 10**9


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


class CreateProductRequest(_Strict):
    sku: str = Field(pattern=SKU_PATTERN, description="Unique stock-keeping unit (letters, digits, . _ -)")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    category: str = Field(min_length=1, max_length=100)
    price: StrictInt = Field(ge=0, le=MAX_PRICE, description="Integer minor units (cents), never a float")
    currency: str = Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code, upper case")
    stock: StrictInt = Field(default=0, ge=0, le=MAX_STOCK)
    low_stock_threshold: StrictInt = Field(default=5, ge=0, le=MAX_STOCK)

    @field_validator("name", "category")
    @classmethod
    def _names_not_blank(cls, v: str) -> str:
        return _not_blank(v)


class UpdateProductRequest(_Strict):
    """Any subset of the writable fields except ``stock`` (use the stock endpoint for that)."""

    sku: str | None = Field(default=None, pattern=SKU_PATTERN)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    price: StrictInt | None = Field(default=None, ge=0, le=MAX_PRICE)
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    low_stock_threshold: StrictInt | None = Field(default=None, ge=0, le=MAX_STOCK)

    @field_validator("name", "category")
    @classmethod
    def _names_not_blank(cls, v: str | None) -> str | None:
        return None if v is None else _not_blank(v)

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateProductRequest:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be null")
        return self


class StockAdjustmentRequest(_Strict):
    delta: StrictInt = Field(ge=-MAX_STOCK_DELTA, le=MAX_STOCK_DELTA,
                             description="Added to the stock (negative removes); stock never goes below 0")

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("delta must not be 0")
        return v
