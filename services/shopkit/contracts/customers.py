"""Request bodies of the customers service (``/auth/*``, ``/customers/me``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

PASSWORD_MIN = 10
PASSWORD_MAX = 128


def check_password_policy(value: str) -> str:
    """Beyond the 10..128 length bounds: not blank, not digits only, at least 4 distinct characters."""
    if not value.strip():
        raise ValueError("password must not be blank")
    if value.isdigit():
        raise ValueError("password must not be digits only")
    if len(set(value)) < 4:
        raise ValueError("password must use at least 4 different characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(_Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    name: str = Field(min_length=1, max_length=100)

    @field_validator("password")
    @classmethod
    def _policy(cls, v: str) -> str:
        return check_password_policy(v)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be blank")
        return v.strip()


class LoginRequest(_Strict):
    # Not EmailStr: logging in only looks the address up, and must never lock out an account whose
    # address a stricter validator (or a newer email-validator) would refuse.
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class RefreshRequest(_Strict):
    refresh_token: str = Field(min_length=16, max_length=512)


class UpdateMeRequest(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    password: str | None = Field(default=None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    current_password: str | None = Field(default=None, max_length=PASSWORD_MAX)

    @field_validator("password")
    @classmethod
    def _policy(cls, v: str | None) -> str | None:
        return None if v is None else check_password_policy(v)
