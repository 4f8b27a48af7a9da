"""Stable pseudonyms for case ids, so shared outputs carry no identifying file or patient names.

The key file (kept by the user, apart from the outputs) holds a random secret and the mapping; the
same key gives the same pseudonym for the same case id in every run, so tables from several runs
still join.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.errors import ConfigError


class Pseudonymiser:
    """``pseudonymiser("STS_001")`` → ``"P3f9a1c0b2d"``: HMAC-SHA256 of the case id under the key's secret."""

    def __init__(self, key_file: str | Path):
        self.key_file = Path(key_file)
        if self.key_file.exists():
            try:
                data = json.loads(self.key_file.read_text())
                self._secret = bytes.fromhex(data["secret"])
                self.mapping: dict[str, str] = dict(data.get("ids", {}))
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"not a radpipe pseudonym key ({exc})", file=str(self.key_file)) from None
        else:
            self._secret = secrets.token_bytes(32)
            self.mapping = {}

    def __call__(self, case_id: str) -> str:
        if case_id not in self.mapping:
            digest = hmac.new(self._secret, case_id.encode("utf-8"), hashlib.sha256).hexdigest()
            self.mapping[case_id] = f"P{digest[:12]}"
        return self.mapping[case_id]

    def save(self) -> None:
        """Write the key (secret + mapping) readable by its owner only."""
        payload = {"note": "radpipe pseudonym key: keep it apart from the shared outputs",
                   "secret": self._secret.hex(), "ids": dict(sorted(self.mapping.items()))}
        atomic_write_text(self.key_file, json.dumps(payload, indent=2))
        os.chmod(self.key_file, 0o600)

    def table(self, frame: pd.DataFrame, *, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
        """Replace ``case_id`` (and the case id inside the named free-text columns) by pseudonyms."""
        if frame.empty or "case_id" not in frame.columns:
            return frame
        frame = frame.copy()
        originals = frame["case_id"].astype(str)
        for column in text_columns:
            if column in frame.columns:
                frame[column] = [
                    self.text(text, [case_id]) if isinstance(text, str) else text
                    for text, case_id in zip(frame[column], originals, strict=True)
                ]
        frame["case_id"] = originals.map(self)
        return frame

    def text(self, text: str, case_ids) -> str:
        """``text`` with every whole-token occurrence of the given case ids replaced by their pseudonyms.

        Only whole tokens: with case id ``"1"`` the UID ``1.2.840.10008.1`` and the number ``21`` stay as they
        are, and with ``"PAT1"`` so does ``PAT10``. See :func:`case_id_pattern` for the rule.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = Pseudonymiser(pathlib.Path(tempfile.mkdtemp()) / "key.json")
        >>> p.text("series 1.2.840.1 of case 1 (21 slices)", ["1"]) == f"series 1.2.840.1 of case {p('1')} (21 slices)"
        True
        """
        # longest first, so an id that contains another ("PAT1_2024", "PAT1") is replaced as a whole
        for case_id in sorted({str(c) for c in case_ids if str(c)}, key=len, reverse=True):
            if case_id in text:
                text = case_id_pattern(case_id).sub(self(case_id), text)
        return text


def case_id_pattern(case_id: str) -> re.Pattern:
    """Where ``case_id`` stands as a whole token in free text.

    Not preceded by a word character, ``.``, ``-`` or ``/``, and not followed by a letter, digit, ``-``, ``/``
    or a ``.`` and a digit: so numbers (``21``, ``1.5``), UIDs (``1.2.840.1``), longer ids (``PAT10``,
    ``MRN-1``) and path parts keep their text. A ``_`` or a ``.`` and a letter after the id do end it, because
    file names are built that way (``STS_001.nii.gz``, ``brain1_image.nrrd``) and must not carry the id out.
    """
    return re.compile(rf"(?<![\w./-]){re.escape(case_id)}(?![^\W_]|[-/]|\.\d)")
