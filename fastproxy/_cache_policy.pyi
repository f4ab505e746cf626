from collections.abc import Iterable

NOT_STORABLE: tuple[str, ...]
HEURISTIC_CAP: int

_Values = str | bytes | Iterable[str | bytes]

def parse_cache_control(values: _Values) -> dict[str, int | bool | None]: ...
def parse_http_date(value: str | bytes, now: float | None = None) -> int | None: ...
def heuristically_cacheable(status: int) -> bool: ...
def storable(
    status: int,
    response_cc: _Values = (),
    request_cc: _Values = (),
    *,
    method: str = "GET",
    authorization: bool = False,
    expires: bool = False,
    set_cookie: bool = False,
    allow_set_cookie: bool = False,
    vary_star: bool = False,
) -> str: ...
def freshness_lifetime(
    status: int,
    response_cc: _Values = (),
    *,
    date: int | None = None,
    expires: int | None = None,
    expires_invalid: bool = False,
    last_modified: int | None = None,
    response_time: int = 0,
    heuristic_cap: int = ...,
) -> int: ...
def current_age(
    now: int, *, response_time: int, request_time: int, date: int | None = None, age_value: int = 0
) -> int: ...
def vary_key(vary: str | bytes | list[str] | tuple[str, ...], head: bytes) -> int: ...
