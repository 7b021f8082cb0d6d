"""HTTP routes of the products service: public reads, admin writes."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from products.catalog import Catalog, ListQuery
from products.schemas import ProductOut, ProductPage, SortKey
from shopkit.app import BEARER
from shopkit.auth import requires_admin
from shopkit.contracts.products import CreateProductRequest, StockAdjustmentRequest, UpdateProductRequest
from shopkit.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

MAX_OFFSET = 100_000


class ProductController(Controller):
    path = "/products"
    tags = ["products"]

    @get("/", summary="List, filter, search and sort the catalog",
         description="Public. `q` searches names (case-insensitive); `in_stock=true` hides sold-out products; "
                     "`sort` is one of name, -name, price, -price, stock, -stock, newest, oldest.")
    async def list_products(
        self,
        catalog: NamedDependency[Catalog],
        q: str | None = Parameter(default=None, max_length=100),
        category: str | None = Parameter(default=None, max_length=100),
        min_price: int | None = Parameter(default=None, ge=0),
        max_price: int | None = Parameter(default=None, ge=0),
        in_stock: FromQuery[bool | None] = None,
        sort: FromQuery[SortKey] = "name",
        limit: int = Parameter(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    ) -> ProductPage:
        return await catalog.list(ListQuery(q=q or None, category=category or None, min_price=min_price,
                                            max_price=max_price, in_stock=in_stock, sort=sort, limit=limit,
                                            offset=offset))

    @get("/{product_id:str}", summary="One product", description="Public.")
    async def get_product(self, catalog: NamedDependency[Catalog], product_id: FromPath[str]) -> ProductOut:
        return await catalog.get(product_id)

    @post("/", summary="Create a product", description="Admin only. 409 when the SKU is taken.",
          guards=[requires_admin], security=BEARER, status_code=HTTP_201_CREATED)
    async def create_product(self, catalog: NamedDependency[Catalog],
                             data: JSONBody[CreateProductRequest]) -> ProductOut:
        return await catalog.create(data)

    @patch("/{product_id:str}", summary="Change product fields",
           description="Admin only. Any subset of the writable fields except stock (use /stock).",
           guards=[requires_admin], security=BEARER)
    async def update_product(self, catalog: NamedDependency[Catalog], product_id: FromPath[str],
                             data: JSONBody[UpdateProductRequest]) -> ProductOut:
        return await catalog.update(product_id, data)

    @delete("/{product_id:str}", summary="Delete a product", description="Admin only.",
            guards=[requires_admin], security=BEARER, status_code=HTTP_204_NO_CONTENT)
    async def delete_product(self, catalog: NamedDependency[Catalog], product_id: FromPath[str]) -> None:
        await catalog.delete(product_id)

    @post("/{product_id:str}/stock", summary="Adjust the stock by a delta",
          description="Admin only. 409 when the stock would go below 0.",
          guards=[requires_admin], security=BEARER, status_code=HTTP_200_OK)
    async def adjust_stock(self, catalog: NamedDependency[Catalog], product_id: FromPath[str],
                           data: JSONBody[StockAdjustmentRequest]) -> ProductOut:
        return await catalog.adjust_stock(product_id, data.delta)
