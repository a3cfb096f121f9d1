"""Health, metrics, uniform errors, OpenAPI, retention."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.service.conftest import Account, register, wav_bytes
from vocalis.service.retention import purge_expired
from vocalis.storage.tables import PredictionRecord, utcnow


def test_healthz_reports_database_and_model(make_client) -> None:  # type: ignore[no-untyped-def]
    c = make_client(preload_model=True)
    r = c.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] is True and r.json()["model"]["loaded"] is True


def test_healthz_degraded_when_model_is_missing(make_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = make_client(preload_model=True, model_path=tmp_path / "missing.vocalis")
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json()["model"]["loaded"] is False
    acct = register(c)
    r = c.post("/v1/predict", headers={**acct.headers, "content-type": "audio/wav"}, content=wav_bytes())
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"


def test_metrics_expose_requests_predictions_alerts_deliveries(client: TestClient, ann: Account) -> None:
    client.post("/v1/contacts", headers=ann.headers, json={"name": "M", "email": "m@example.org"})
    assert client.post("/v1/predict", headers={**ann.headers, "content-type": "audio/wav"},
                       content=wav_bytes()).status_code == 200
    client.post("/v1/alerts", headers=ann.headers, json={})
    client.get("/v1/alerts/does-not-exist", headers=ann.headers)
    text = client.get("/metrics").text
    assert 'vocalis_http_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    assert 'vocalis_http_requests_total{method="GET",route="/v1/alerts/{alert_id}",status="404"} 1.0' in text
    assert "vocalis_http_request_duration_seconds_bucket" in text
    assert "vocalis_predictions_total{label=" in text
    assert 'vocalis_alerts_created_total{source="manual"} 1.0' in text
    assert 'vocalis_deliveries{status="pending"} 1.0' in text
    assert 'vocalis_alerts{status="confirmed"} 1.0' in text


def test_errors_are_uniform_json(client: TestClient, ann: Account) -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.put("/v1/alerts", headers=ann.headers)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/v1/contacts", headers={**ann.headers, "content-type": "application/json"}, content=b"{bad")
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["message"] == "body is not valid JSON (at character 1)"
    r = client.post("/v1/contacts", headers=ann.headers, json={"name": "   ", "email": "a@example.org"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "name: name must not be blank"
    r = client.post("/v1/contacts", headers=ann.headers, json={"name": "A", "phone": "+33612345678", "channels": []})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("channels=[] must name at least one way")
    r = client.post("/v1/contacts", headers={**ann.headers, "content-type": "application/json"}, content=b'{"n\xff"}')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_body", r.text
    assert "UTF-8" in r.json()["error"]["message"]
    big = b'{"name": "A", "email": "' + b"a" * (2 * 1024 * 1024) + b'@example.org"}'
    r = client.post("/v1/contacts", headers={**ann.headers, "content-type": "application/json"}, content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"  # declared length
    r = client.post("/v1/contacts", headers={**ann.headers, "content-type": "application/json"},
                    content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]))  # chunked: counted
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    r = client.post("/v1/contacts", headers=ann.headers, json={"name": "A", "email": "a" * 5000 + "@example.org"})
    assert r.status_code == 422 and "at most 320 characters" in r.text and len(r.content) < 2000
    r = client.post("/v1/contacts", headers=ann.headers, json={"name": "A", "email": "a@b.c\u0000d"})
    assert r.status_code == 422 and "control characters" in r.json()["error"]["message"]
    assert client.get("/v1/contacts", headers=ann.headers).json() == []  # nothing was stored
    r = client.get("/v1/history?limit=0", headers=ann.headers)
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/contacts", "/v1/alerts/{alert_id}/cancel", "/v1/history", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    # every error is documented in the one error shape, FastAPI's own 422 shape is gone
    contact = spec["paths"]["/v1/contacts/{contact_id}"]["get"]["responses"]
    assert {"401", "404", "422"} <= set(contact)
    assert contact["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "401" in spec["paths"]["/v1/auth/token"]["post"]["responses"]


def test_retention_purges_old_history_and_evidence(client: TestClient, ann: Account) -> None:
    alert = client.post("/v1/alerts", headers=ann.headers, json={}).json()
    client.post(f"/v1/alerts/{alert['id']}/evidence", headers={**ann.headers, "content-type": "audio/ogg"},
                content=b"1234")
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as s, s.begin():
        s.add(PredictionRecord(user_id=ann.id, label="calm", probabilities={"calm": 1.0}, valence=0.5, arousal=-0.5,
                               created_at=utcnow() - timedelta(days=100)))
        s.add(PredictionRecord(user_id=ann.id, label="sad", probabilities={"sad": 1.0}, valence=-0.5, arousal=-0.5))
    root = client.app.state.settings.evidence_root  # type: ignore[attr-defined]
    assert purge_expired(factory, root, 90) == (1, 0)
    assert client.get("/v1/history", headers=ann.headers).json()["total"] == 1
    assert purge_expired(factory, root, 1, now=utcnow() + timedelta(days=2)) == (1, 1)
    # the alert was finished (no contact to deliver to): it expires too, with its evidence
    assert client.get(f"/v1/alerts/{alert['id']}/evidence", headers=ann.headers).status_code == 404
    assert list((root / ann.id / alert["id"]).iterdir()) == []


def test_the_web_ui_and_its_icon_are_served(client: TestClient) -> None:
    """The page names its icon, and the icon is there (no 404 in every browser's console)."""
    page = client.get("/")
    assert page.status_code == 200 and 'rel="icon" href="favicon.svg"' in page.text
    icon = client.get("/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.lstrip().startswith("<svg")
