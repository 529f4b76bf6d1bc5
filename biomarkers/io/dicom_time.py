"""DICOM date, time and date-time values, and series-wide tags checked across slices.

DA, TM and DT follow DICOM PS3.5 section 6.2 (fractional seconds, "+HHMM" UTC offsets);
a DT's own offset wins over TimezoneOffsetFromUTC (0008,0201).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from biomarkers.io.dicom import DicomSeries, DicomTagError, tag_label, text_value

_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)([+-]\d{4})?$")


def _bad(keyword: str, text: str, form: str, path: Path) -> DicomTagError:
    return DicomTagError(f"{tag_label(keyword)} is {text!r}, not a valid {form}; correct the "
                         "header", path=path)


def parse_da(text: str, keyword: str, path: Path) -> date:
    """A DA value (``YYYYMMDD``; the old ``YYYY.MM.DD`` form is accepted)."""
    try:
        if re.fullmatch(r"\d{4}(\.?)\d{2}\1\d{2}", text) is None:
            raise ValueError(text)
        return datetime.strptime(text.replace(".", ""), "%Y%m%d").date()
    except ValueError:
        raise _bad(keyword, text, "date (DA, YYYYMMDD)", path) from None


def parse_tm(text: str, keyword: str, path: Path) -> timedelta:
    """A TM value (``HH[MM[SS[.FFFFFF]]]``, old colon form accepted) as time since midnight."""
    match = _TM.match(text)
    if match is None or int(match[1]) > 23 or int(match[2] or 0) > 59 or int(match[3] or 0) > 60:
        raise _bad(keyword, text, "time (TM, HHMMSS.FFFFFF)", path)
    fraction = float(f"0.{match[4]}") if match[4] else 0.0
    return timedelta(hours=int(match[1]), minutes=int(match[2] or 0),
                     seconds=int(match[3] or 0) + fraction)


def parse_utc_offset(text: str, keyword: str, path: Path) -> timezone:
    """A ``+HHMM``/``-HHMM`` offset (TimezoneOffsetFromUTC, or a DT suffix)."""
    if re.fullmatch(r"[+-]\d{4}", text) is None or int(text[3:5]) > 59:
        raise _bad(keyword, text, "UTC offset (+HHMM or -HHMM)", path)
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))


def parse_dt(text: str, keyword: str, path: Path) -> tuple[datetime, timezone | None]:
    """A DT value down to at least the hour: the naive date-time and its own UTC offset, if any."""
    match = _DT.match(text)
    if match is None:
        raise _bad(keyword, text, "date-time (DT, YYYYMMDDHHMMSS.FFFFFF&ZZXX)", path)
    day = parse_da(match[1], keyword, path)
    moment = datetime.combine(day, datetime.min.time()) + parse_tm(match[2], keyword, path)
    return moment, None if match[3] is None else parse_utc_offset(match[3], keyword, path)


def with_zone(moment: datetime, zone: timezone | None) -> datetime:
    """``moment`` with UTC offset ``zone`` attached (unchanged when ``zone`` is None)."""
    return moment if zone is None else moment.replace(tzinfo=zone)


def seconds_between(later: datetime, earlier: datetime, later_name: str, earlier_name: str,
                    path: Path) -> float:
    """``later - earlier`` in seconds; an error when only one of them has a UTC offset."""
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        with_offset, without = ((later_name, earlier_name) if later.tzinfo is not None
                                else (earlier_name, later_name))
        raise DicomTagError(f"{with_offset} carries a UTC offset but {without} has none and "
                            f"{tag_label('TimezoneOffsetFromUTC')} is absent: the time between "
                            "them is unknown; add TimezoneOffsetFromUTC", path=path)
    return (later - earlier).total_seconds()


def _combine(ds: Dataset, date_kw: str, time_kw: str, path: Path,
             zone: timezone | None) -> datetime | None:
    day, time = text_value(ds, date_kw), text_value(ds, time_kw)
    if day is None or time is None:
        return None
    moment = datetime.combine(parse_da(day, date_kw, path), datetime.min.time())
    return with_zone(moment + parse_tm(time, time_kw, path), zone)


def acquisition_datetime(ds: Dataset, path: Path, zone: timezone | None) -> datetime | None:
    """A slice's AcquisitionDateTime, else AcquisitionDate + AcquisitionTime; None if incomplete.

    ``zone`` (TimezoneOffsetFromUTC) applies unless the DT value carries its own offset.
    """
    text = text_value(ds, "AcquisitionDateTime")
    if text is None:
        return _combine(ds, "AcquisitionDate", "AcquisitionTime", path, zone)
    moment, own = parse_dt(text, "AcquisitionDateTime", path)
    return with_zone(moment, own or zone)


class SeriesTags:
    """Series-wide tag values of a :class:`DicomSeries`, checked to agree between its slices.

    Identical raw bytes are compared without conversion (fast); the labels of the tags
    found are collected in :attr:`used`. ``isotope=True`` reads from the (single) item of
    the RadiopharmaceuticalInformationSequence (0054,0016).
    """

    def __init__(self, series: DicomSeries) -> None:
        self.series = series
        self.path = series.files[0]
        self.used: set[str] = set()
        self._cache: dict[tuple[str, bool], str | None] = {}

    def _item(self, ds: Dataset, path: Path) -> Dataset | None:
        items = ds.get("RadiopharmaceuticalInformationSequence")
        if items is not None and len(items) > 1:
            raise DicomTagError(f"{tag_label('RadiopharmaceuticalInformationSequence')} holds "
                                f"{len(items)} items; one radiopharmaceutical is supported", path=path)
        return items[0] if items else None

    def text(self, keyword: str, isotope: bool = False) -> str | None:
        """The common text value of ``keyword`` (None if absent everywhere)."""
        if (keyword, isotope) not in self._cache:
            tag, distinct = tag_for_keyword(keyword), {}
            for path, ds in zip(self.series.files, self.series.headers):
                source = self._item(ds, path) if isotope else ds
                element = None if source is None else source.get_item(tag)
                value = None if element is None else element.value
                distinct.setdefault(value if value is None or isinstance(value, bytes)
                                    else object(), (path, source))
            seen: dict[str | None, Path] = {}
            for path, source in distinct.values():
                seen.setdefault(None if source is None else text_value(source, keyword), path)
            if len(seen) > 1:
                (a, path_a), (b, path_b) = list(seen.items())[:2]
                raise DicomTagError(f"{tag_label(keyword)} differs between slices ({path_a.name}: "
                                    f"{a!r}, {path_b.name}: {b!r}); one series has one value",
                                    path=path_a.parent)
            self._cache[keyword, isotope] = next(iter(seen))
        value = self._cache[keyword, isotope]
        if value is not None:
            self.used.add(tag_label(keyword))
        return value

    def number(self, keyword: str, why: str, isotope: bool = False) -> float:
        """The common value of ``keyword`` as a positive number; ``why`` explains errors."""
        text = self.text(keyword, isotope)
        where = f" in {tag_label('RadiopharmaceuticalInformationSequence')}" if isotope else ""
        if text is None:
            raise DicomTagError(f"{tag_label(keyword)}{where} is missing; {why}: add it to the "
                                "DICOM header", path=self.path)
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise DicomTagError(f"{tag_label(keyword)}{where} is {text}, it must be a positive "
                                f"number; {why}", path=self.path)
        return value

    def zone(self) -> timezone | None:
        """TimezoneOffsetFromUTC (0008,0201), the offset of every DA/TM value, if given."""
        text = self.text("TimezoneOffsetFromUTC")
        return None if text is None else parse_utc_offset(text, "TimezoneOffsetFromUTC", self.path)

    def datetime(self, date_kw: str, time_kw: str, why: str) -> datetime:
        """The common date and time of two DA/TM tags, with :meth:`zone`; both required."""
        for keyword in (date_kw, time_kw):
            if self.text(keyword) is None:
                raise DicomTagError(f"{tag_label(keyword)} is missing; {why}: add it to the DICOM "
                                    "header", path=self.path)
        return _combine(self.series.headers[0], date_kw, time_kw, self.path, self.zone())
