"""Accessibility basics on every screen page: each visible form control has a label, one h1, the
language is declared, images have text alternatives, no positive tabindex breaks the tab order."""

import re
from html.parser import HTMLParser

import pytest

from dispensing.models import Counter, Device, DeviceKind


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.controls, self.labels_for, self.h1, self.images, self.tabindex = [], set(), 0, [], []
        self._label_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "label":
            self._label_depth += 1
            if attrs.get("for"):
                self.labels_for.add(attrs["for"])
        if tag in {"input", "select", "textarea"} and attrs.get("type") not in {"hidden", "submit", "button"}:
            self.controls.append((tag, attrs, self._label_depth > 0))
        if tag == "h1":
            self.h1 += 1
        if tag == "img":
            self.images.append(attrs)
        if "tabindex" in attrs and attrs["tabindex"] not in {"0", "-1"}:
            self.tabindex.append((tag, attrs))

    def handle_endtag(self, tag):
        if tag == "label":
            self._label_depth -= 1


def _check(html: str, path: str) -> None:
    page = _Page()
    page.feed(html)
    assert re.search(r'<html lang="(vi|en)"', html), path
    assert page.h1 == 1, f"{path}: {page.h1} h1"
    unlabelled = [attrs.get("name") for _tag, attrs, wrapped in page.controls
                  if not wrapped and attrs.get("id") not in page.labels_for and not attrs.get("aria-label")]
    assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
    assert all(img.get("alt") for img in page.images), path
    assert page.tabindex == [], path


@pytest.fixture
def pump(session, clinic):
    counter = Counter(clinic_id=clinic.id, code="Q1", name="Quầy 1")
    session.add(counter)
    session.flush()
    device = Device(clinic_id=clinic.id, counter_id=counter.id, code="PUMP-1", kind=DeviceKind.PUMP, driver="ne1000",
                    port_url="sim://ne1000", settings={})
    session.add(device)
    session.flush()
    return device


def test_every_screen_page(as_user, patient, pump, staff):
    pages = {
        "physician": ["/", "/patients", "/patients?q=le", "/patients/new", f"/patients/{patient.id}",
                      f"/patients/{patient.id}/edit", f"/patients/{patient.id}/card",
                      f"/patients/{patient.id}/orders/new", "/tasks"],
        "admin": ["/admin/users", f"/admin/users/{staff['nurse'].id}", "/admin/counters",
                  f"/admin/devices/{pump.id}/calibrate", "/admin/settings"],
    }
    for role, paths in pages.items():
        browser = as_user(role)
        for path in paths:
            response = browser.client.get(path)
            assert response.status_code == 200, path
            _check(response.get_data(as_text=True), path)
    _check(browser.client.application.test_client().get("/login").get_data(as_text=True), "/login")
