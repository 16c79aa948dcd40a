"""First run (issue 13, item 5): ``dingsync doctor`` asks the Stream gateway for a ticket and
checks the gateway host it names (DNS, TLS); a 401 names both causes users hit."""

from __future__ import annotations

import socket
from typing import Dict

from click.testing import CliRunner, Result

from dingsync.cli import EXIT_REFUSED, main
from dingsync.testing import FakeDingTalk

OPEN = "/v1.0/gateway/connections/open"


def doctor(env: Dict[str, str]) -> Result:
    return CliRunner().invoke(main, ["doctor", "--timeout", "2"], env=env, catch_exceptions=False)


def test_doctor_gets_a_ticket_and_checks_the_gateway_host(dingtalk: FakeDingTalk) -> None:
    """The ticket request succeeds; the gateway's DNS is checked; the ticket is never shown."""
    result = doctor(dingtalk.env())
    assert result.exit_code == 0, result.output
    assert f"[ ok ] stream ticket: granted; gateway {dingtalk.ws_endpoint}" in result.output
    assert "[ ok ] DNS stream gateway: 127.0.0.1 -> 127.0.0.1" in result.output
    assert "[skip] TLS stream gateway" in result.output
    request = dingtalk.open_requests[-1]
    assert request.client_id == dingtalk.client_id and request.status == 200
    assert request.ticket and request.ticket not in result.output


def test_a_401_from_the_gateway_names_both_causes(dingtalk: FakeDingTalk) -> None:
    """Wrong credentials and the IP allow-list look the same at DingTalk: both are named."""
    env = {**dingtalk.env(), "DINGTALK_CLIENT_SECRET": "not-the-secret"}
    result = doctor(env)
    assert result.exit_code == EXIT_REFUSED
    assert "[FAIL] stream ticket: HTTP 401 authFailed" in result.output
    hint = result.output.split("[FAIL] stream ticket", 1)[1]
    assert "DINGTALK_CLIENT_SECRET" in hint and "IP allow-list" in hint
    assert "not-the-secret" not in result.output


def test_an_unresolvable_gateway_host_fails_its_dns_check(dingtalk: FakeDingTalk) -> None:
    dingtalk.fail_next(
        "POST",
        OPEN,
        status=200,
        body={"endpoint": "wss://gateway.invalid/connect", "ticket": "t-secret-1"},
    )
    result = doctor(dingtalk.env())
    assert result.exit_code == EXIT_REFUSED
    assert "[FAIL] DNS stream gateway: gateway.invalid does not resolve" in result.output
    assert "t-secret-1" not in result.output


def test_an_unreachable_tls_gateway_fails_its_tls_check(dingtalk: FakeDingTalk) -> None:
    """A wss:// gateway gets a TLS handshake, to the host and port DingTalk named."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dingtalk.fail_next(
        "POST",
        OPEN,
        status=200,
        body={"endpoint": f"wss://127.0.0.1:{port}/connect", "ticket": "t"},
    )
    result = doctor(dingtalk.env())
    assert result.exit_code == EXIT_REFUSED
    assert f"[FAIL] TLS stream gateway: cannot connect to 127.0.0.1:{port}" in result.output


def test_a_gateway_refusal_other_than_401_is_reported(dingtalk: FakeDingTalk) -> None:
    dingtalk.fail_next(
        "POST", OPEN, status=503, body={"code": "ServiceUnavailable", "message": "busy"}
    )
    result = doctor(dingtalk.env())
    assert result.exit_code == EXIT_REFUSED
    assert "[FAIL] stream ticket: the gateway answered HTTP 503 ServiceUnavailable" in result.output
    assert "Stream mode" in result.output
