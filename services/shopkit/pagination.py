"""One page-size bound for every list endpoint (``limit``/``offset``), so the shop's lists behave alike."""

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
