"""customers.settings: a login (refresh-token family) has a bounded maximum age, at least one refresh token's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from customers.settings import Settings

DAY = 86400


@pytest.fixture(autouse=True)
def no_refresh_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MICROSHOP_REFRESH_TOKEN_TTL_SECONDS", "MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def test_the_family_max_age_is_30_days_unless_its_variable_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().refresh_family_max_age_seconds == 30 * DAY
    monkeypatch.setenv("MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS", str(60 * DAY))
    assert Settings().refresh_family_max_age_seconds == 60 * DAY


def test_a_family_max_age_shorter_than_the_refresh_token_lifetime_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS", str(7 * DAY))
    with pytest.raises(ValidationError, match=r"MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS \(604800\) must be at least "
                                              r"MICROSHOP_REFRESH_TOKEN_TTL_SECONDS \(1209600\)"):
        Settings()
    monkeypatch.setenv("MICROSHOP_REFRESH_TOKEN_TTL_SECONDS", str(7 * DAY))  # equal: one token's worth of login
    assert Settings().refresh_family_max_age_seconds == 7 * DAY


def test_unset_the_family_max_age_follows_a_longer_refresh_token_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROSHOP_REFRESH_TOKEN_TTL_SECONDS", str(60 * DAY))  # the chart allows up to 90 days
    assert Settings().refresh_family_max_age_seconds == 60 * DAY
    monkeypatch.setenv("MICROSHOP_REFRESH_TOKEN_TTL_SECONDS", str(DAY))
    assert Settings().refresh_family_max_age_seconds == 30 * DAY


@pytest.mark.parametrize("seconds", [299, 365 * DAY + 1])
def test_the_family_max_age_is_bounded(seconds: int) -> None:
    with pytest.raises(ValidationError, match="refresh_family_max_age_seconds"):
        Settings(refresh_token_ttl_seconds=300, refresh_family_max_age_seconds=seconds)
