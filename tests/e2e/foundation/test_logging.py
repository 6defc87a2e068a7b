"""No patient names or codes in log lines, whatever the request carried."""

from tests import factories


def test_request_logs_carry_ids_not_patient_data(client, staff, session, clinic, capsys):
    patient = factories.patient(session, clinic, full_name="Hoàng Thị Bí Mật", code="SECRET-42",
                                card_barcode="P424242")
    session.commit()
    response = client.post("/api/v1/session", json={"username": "nurse1", "password": factories.PASSWORD})
    assert response.status_code == 201
    capsys.readouterr()
    for path in ("/api/v1/patients?q=Hoàng Thị Bí Mật", "/api/v1/patients?q=SECRET-42",
                 "/api/v1/patients?q=P424242", f"/api/v1/patients/{patient.id}",
                 "/api/v1/patients/999999"):
        assert client.get(path).status_code in (200, 404)
    logged = capsys.readouterr().out
    assert "route=/api/v1/patients" in logged  # the lines are there…
    for secret in ("Bí Mật", "Bi Mat", "bi mat", "SECRET-42", "P424242"):
        assert secret not in logged  # …without the patient's data
