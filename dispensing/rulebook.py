"""The rule tables each clinic selected, loaded and validated once per process."""

from __future__ import annotations

import threading
from pathlib import Path

from dispensing.models import Clinic
from dispensing.rules import RuleSelection, RuleSet, load_rule_set, validate_all


class RuleBook:
    """Loads rule sets from ``rules_dir`` and caches them by selection.

    ``validate()`` checks every shipped table; the app calls it at start-up so a malformed table
    stops the process with RuleTableError naming the file, key and problem.
    """

    def __init__(self, rules_dir: Path):
        self.rules_dir = Path(rules_dir)
        self._cache: dict[RuleSelection, RuleSet] = {}
        self._lock = threading.Lock()

    def validate(self) -> list[str]:
        """Return the versions of every table; raises RuleTableError on the first bad one."""
        return validate_all(self.rules_dir)

    def selection_for(self, clinic: Clinic) -> RuleSelection:
        return RuleSelection(
            core=clinic.rules_core,
            missed_dose=clinic.rules_missed_dose,
            take_home=clinic.rules_take_home,
            titration_cap=clinic.rules_titration_cap,
            interactions=clinic.rules_interactions,
        )

    def for_clinic(self, clinic: Clinic) -> RuleSet:
        """Return the clinic's rule set. Raises RuleTableError when a selected table is missing."""
        return self.load(self.selection_for(clinic))

    def load(self, selection: RuleSelection) -> RuleSet:
        with self._lock:
            if selection not in self._cache:
                self._cache[selection] = load_rule_set(self.rules_dir, selection)
            return self._cache[selection]
