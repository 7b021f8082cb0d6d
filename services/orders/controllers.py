"""HTTP routes of the orders service. Everything needs a token; admins may see and move any order."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from orders.schemas import OrderOut, OrderPage
from orders.service import OrderBook
from orders.statuses import Actor, OrderStatus
from shopkit.app import BEARER
from shopkit.auth import Principal, requires_admin, requires_customer
from shopkit.contracts.orders import CreateOrderRequest, StatusChangeRequest
from shopkit.errors import forwarded_prefix
from shopkit.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

MAX_OFFSET = 100_000


def location_of(request: Request[Any, Any, Any], order_id: str) -> str:
    # Behind the gateway the public path is /api/orders/...; it says so with X-Forwarded-Prefix.
    return f"{forwarded_prefix(request)}/orders/{order_id}"


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]
    guards = [requires_customer]
    security = BEARER

    @post("/", summary="Place an order", status_code=HTTP_201_CREATED,
          description="Names and prices come from the catalog. The order starts `pending`; the saga confirms "
                      "or rejects it. 201 with a Location header. With an `Idempotency-Key` header a retry "
                      "(same key, same body) answers 200 with the order the key placed first (header "
                      "`Idempotent-Replayed: true`), never a second order; the same key with a different body "
                      "is 422 `idempotency-key-reused`.",
          responses={200: ResponseSpec(OrderOut, description="A retry: the order this Idempotency-Key placed")})
    async def place_order(self, request: Request[Any, Any, Any], book: NamedDependency[OrderBook],
                          principal: NamedDependency[Principal],
                          data: JSONBody[CreateOrderRequest],
                          idempotency_key: Annotated[str | None, HeaderParameter(
                              name="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
                              description="Makes retries safe: one order per key and customer.")] = None,
                          ) -> Response[OrderOut]:
        placed = await book.place(principal, data, idempotency_key)
        headers = {"Location": location_of(request, placed.order.id)}
        if placed.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(placed.order, status_code=HTTP_200_OK if placed.replayed else HTTP_201_CREATED,
                        headers=headers)

    @get("/", summary="My orders, newest first")
    async def my_orders(
        self, book: NamedDependency[OrderBook], principal: NamedDependency[Principal],
        limit: int = Parameter(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    ) -> OrderPage:
        return await book.mine(principal, limit, offset)

    @get("/{order_id:str}", summary="One order", description="Own orders only (404 otherwise); admins: any.")
    async def get_order(self, book: NamedDependency[OrderBook], principal: NamedDependency[Principal],
                        order_id: FromPath[str]) -> OrderOut:
        return await book.get(principal, order_id)

    @post("/{order_id:str}/cancel", summary="Cancel an order", status_code=HTTP_200_OK,
          description="Own orders while pending or confirmed; 409 otherwise. A confirmed order's stock is "
                      "released by the products service.")
    async def cancel_order(self, book: NamedDependency[OrderBook], principal: NamedDependency[Principal],
                           order_id: FromPath[str]) -> OrderOut:
        return await book.change_status(principal, order_id, OrderStatus.CANCELLED, Actor.OWNER)

    @post("/{order_id:str}/status", summary="Fulfilment: shipped or delivered", status_code=HTTP_200_OK,
          description="Admin only. confirmed → shipped → delivered; any other transition is 409.",
          guards=[requires_admin])
    async def change_status(self, book: NamedDependency[OrderBook], principal: NamedDependency[Principal],
                            order_id: FromPath[str], data: JSONBody[StatusChangeRequest]) -> OrderOut:
        return await book.change_status(principal, order_id, OrderStatus(data.status), Actor.ADMIN)
