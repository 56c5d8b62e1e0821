"""Two corpora for the card-number guard, generated deterministically.

- **Text that holds no card number** (`non_card`): what people and systems write into
  payment records: addresses, invoice and order numbers, phone numbers in many national
  formats, IBANs (valid check digits), UUIDs, timestamps in the forms programs print them,
  tracking numbers, product and bank identifiers, IP addresses and chains, amounts, and notes
  mixing them, in several scripts. The guard's false-positive rate is measured on it.
- **Card numbers** (`cards`): test card numbers of every brand (Visa, Mastercard, American
  Express, Discover, Diners Club, JCB, UnionPay, Maestro, Mir, RuPay, UATP), each written in
  every form the guard must read: plain; grouped with every separator (ASCII punctuation,
  every Unicode dash and space, control characters such as tab and newline, runs of up to
  three); with zero-width characters between digits; in the digits of every script; inside
  sentences. Every line must be found.

`python -m payguard.card_corpus DIR` writes both as JSON lines
(`card_guard_non_card.jsonl`, `card_guard_cards.jsonl`: one `{"category", "text"}` object
each) into DIR; the tests check that the files in tests/data are what this module writes.
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SEED = 20261204
NON_CARD_FILE = "card_guard_non_card.jsonl"
CARDS_FILE = "card_guard_cards.jsonl"

Line = tuple[str, str]  # (category, text)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Test card numbers the brands and processors publish; each passes Luhn.
TEST_CARDS: tuple[tuple[str, str], ...] = (
    ("visa", "4242424242424242"),
    ("visa", "4111111111111111"),
    ("visa", "4000056655665556"),
    ("visa", "4012888888881881"),
    ("visa", "4222222222222"),
    ("visa", "4917610000000000003"),
    ("mastercard", "5555555555554444"),
    ("mastercard", "5200828282828210"),
    ("mastercard", "5105105105105100"),
    ("mastercard", "2223003122003222"),
    ("amex", "378282246310005"),
    ("amex", "371449635398431"),
    ("discover", "6011111111111117"),
    ("discover", "6011000990139424"),
    ("diners", "3056930009020004"),
    ("diners", "36227206271667"),
    ("diners", "30569309025904"),
    ("jcb", "3566002020360505"),
    ("unionpay", "6200000000000005"),
    ("unionpay", "6205500000000000004"),
    ("maestro", "6759649826438453"),
    ("mir", "2200000000000053"),
    ("rupay", "6521000000000007"),
    ("uatp", "135410014004955"),
)


def _group(digits: str, sizes: tuple[int, ...]) -> list[str]:
    groups: list[str] = []
    position = 0
    for size in sizes:
        if position >= len(digits):
            break
        groups.append(digits[position : position + size])
        position += size
    if position < len(digits):
        groups.append(digits[position:])
    return groups


def brand_groups(digits: str) -> list[str]:
    """The grouping printed on the card: 4-6-5 for 15 digits, 4-6-4 for 14, else fours."""
    if len(digits) == 15:
        return _group(digits, (4, 6, 5))
    if len(digits) == 14:
        return _group(digits, (4, 6, 4))
    return _group(digits, (4, 4, 4, 4, 4))


def _category_chars(category: str) -> list[str]:
    return [
        chr(c)
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) == category
    ]


def digit_scripts() -> list[tuple[str, list[str]]]:
    """Each run of ten decimal digits (category Nd, 0 to 9), named by its zero."""
    zeros = [
        chr(c)
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF
        and unicodedata.category(chr(c)) == "Nd"
        and unicodedata.decimal(chr(c)) == 0
    ]
    scripts = []
    for zero in zeros:
        digits = [chr(ord(zero) + value) for value in range(10)]
        if all(unicodedata.decimal(d, -1) == value for value, d in enumerate(digits)):
            scripts.append((unicodedata.name(zero, f"U+{ord(zero):04X}"), digits))
    return scripts


def _other_digits() -> dict[int, list[str]]:
    """Digits that are not decimal digits (superscripts, circled...), by value."""
    found: dict[int, list[str]] = {value: [] for value in range(10)}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        char = chr(c)
        if unicodedata.category(char) != "Nd" and unicodedata.digit(char, None) is not None:
            found[unicodedata.digit(char)].append(char)
    return found


def cards() -> list[Line]:
    lines: list[Line] = []
    ascii_separators = [
        " ", "-", ".", "_", "/", "|", ":", "+", ",", ";", "*", "#", "~", "=", "'", '"',
        "\\", "(", ")", "[", "]", "{", "}", "<", ">", "!", "?", "%", "&", "@", "^", "`",
    ]  # fmt: skip
    runs = [
        "  ", " - ", " / ", "--", "---", " | ", "\t", "\n", "\r\n", "\t\t", " \n ",
        "\n\n\n", ". ", "/ ", ": ", " + ", "_-_", "- -",
    ]  # fmt: skip
    dashes = _category_chars("Pd")
    spaces = [*_category_chars("Zs"), "\u2028", "\u2029", "\x0b", "\x0c", "\x85"]
    controls = [chr(c) for c in (0x01, 0x07, 0x1B, 0x1C, 0x1F, 0x7F, 0x90, 0x9F)]
    zero_width = [
        "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u3164",
        "\ufe0f", "\u034f", "\u0301", "\u20dd", "\U000e0020", "\u061c", "\u200e", "\u2066",
    ]  # fmt: skip
    for brand, digits in TEST_CARDS:
        groups = brand_groups(digits)
        lines.append((f"{brand}/plain", digits))
        for separator in ascii_separators + runs:
            lines.append((f"{brand}/ascii separator", separator.join(groups)))
        for separator in dashes:
            lines.append((f"{brand}/unicode dash", separator.join(groups)))
        for separator in spaces:
            lines.append((f"{brand}/unicode space", separator.join(groups)))
        for separator in controls:
            lines.append((f"{brand}/control character", separator.join(groups)))
        lines.append(
            (
                f"{brand}/mixed separators",
                "".join(
                    group + ("-", " ", ".", "/", "")[min(i, 4)] for i, group in enumerate(groups)
                ),
            )
        )
        for size in (1, 2, 3, 5, 6):
            lines.append((f"{brand}/groups of {size}", " ".join(_group(digits, (size,) * 19))))
        for mark in zero_width:
            lines.append((f"{brand}/zero-width between digits", mark.join(digits)))
            lines.append((f"{brand}/zero-width between groups", (mark * 4).join(groups)))
        for sentence in (
            "my card is {} exp 12/29 cvc on the back",
            "Card: {}",
            "PAN={};exp=1229",
            'please charge "{}" again',
            "ref 12 {} thanks",
            "{}, then the rest",
            "paid with\n{}\nyesterday",
        ):
            lines.append((f"{brand}/in a sentence", sentence.format(" ".join(groups))))
        lines.append((f"{brand}/full width", "".join(chr(0xFF10 + int(d)) for d in digits)))
        lines.append(
            (
                f"{brand}/full width grouped",
                "　".join("".join(chr(0xFF10 + int(d)) for d in group) for group in groups),
            )
        )
    for name, script in digit_scripts():
        for _brand, digits in TEST_CARDS[:: len(TEST_CARDS) // 6]:
            written = "".join(script[int(d)] for d in digits)
            lines.append((f"digits/{name}", written))
            lines.append((f"digits grouped/{name}", "-".join(brand_groups(written))))
    others = _other_digits()
    for brand, digits in TEST_CARDS[:4]:
        for choice in range(3):
            written = "".join(others[int(d)][choice % len(others[int(d)])] for d in digits)
            lines.append((f"{brand}/other digits", written))
        mixed = "".join(
            (d, chr(0x0660 + int(d)), chr(0xFF10 + int(d)), chr(0x1D7CE + int(d)))[i % 4]
            for i, d in enumerate(digits)
        )
        lines.append((f"{brand}/scripts mixed", mixed))
    return lines


# --- text that holds no card number -------------------------------------------------------

STREETS = (
    "Main St", "Oak Avenue", "Maple Drive", "Sunset Blvd", "Elm Street", "Baker Street",
    "High Street", "Hauptstraße", "Rue de Rivoli", "Calle Mayor", "Via Roma", "Rua Augusta",
    "Kingsway", "Queen St W", "Market Street", "Church Road",
)  # fmt: skip
CITIES_US = (
    ("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Denver", "CO"),
    ("Boston", "MA"), ("Seattle", "WA"), ("Miami", "FL"), ("Phoenix", "AZ"),
)  # fmt: skip
WORDS = (
    "cabinets", "tiles", "drywall", "plumbing", "wiring", "roof", "deck", "windows",
    "paint", "flooring", "countertops", "fixtures", "permit", "inspection", "deposit",
)  # fmt: skip


class _Writer:
    def __init__(self, seed: int) -> None:
        # A corpus, not a secret: the same seed must give the same lines.
        self.random = random.Random(seed)  # noqa: S311

    def digits(self, count: int, first_nonzero: bool = False) -> str:
        text = "".join(self.random.choice("0123456789") for _ in range(count))
        if first_nonzero and text:
            text = self.random.choice("123456789") + text[1:]
        return text

    def pick(self, options: Sequence[T]) -> T:
        return self.random.choice(options)

    def number(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def phone(self) -> str:
        kind = self.number(0, 22)
        d = self.digits
        forms: list[Callable[[], str]] = [
            lambda: f"({d(3, True)}) {d(3)}-{d(4)}",
            lambda: f"+1 {d(3, True)}-{d(3)}-{d(4)}",
            lambda: f"+1 ({d(3, True)}) {d(3)}-{d(4)} ext. {d(3)}",
            lambda: f"+44 20 {d(4)} {d(4)}",
            lambda: f"07{d(3)} {d(6)}",
            lambda: f"+44 7{d(3)} {d(6)}",
            lambda: f"+49 30 {d(8)}",
            lambda: f"+49 (0)151 {d(4)} {d(4)}",
            lambda: f"0151 {d(8)}",
            lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"+81 3-{d(4)}-{d(4)}",
            lambda: f"+86 138 {d(4)} {d(4)}",
            lambda: f"+91 {d(5, True)} {d(5)}",
            lambda: f"+55 11 9{d(4)}-{d(4)}",
            lambda: f"+61 4{d(2)} {d(3)} {d(3)}",
            lambda: f"+7 495 {d(3)}-{d(2)}-{d(2)}",
            lambda: f"+34 6{d(2)} {d(3)} {d(3)}",
            lambda: f"+39 3{d(2)} {d(3)} {d(4)}",
            lambda: f"+31 6 {d(8)}",
            lambda: f"+1{d(3, True)}{d(7)}",
            lambda: f"+{self.pick(('44', '33', '34', '39', '61', '81', '91'))}{d(10, True)}",
            lambda: f"{d(3, True)}.{d(3)}.{d(4)}",
        ]
        return forms[kind]()

    def iban(self) -> str:
        country, layout = self.pick(IBAN_LAYOUTS)
        bban = "".join(
            self.digits(1)
            if kind == "n"
            else self.pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            if kind == "a"
            else self.pick("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            for kind in layout
        )
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        check = 98 - int(numeric) % 97
        compact = f"{country}{check:02d}{bban}"
        if self.number(0, 1):
            return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return compact

    def timestamp(self) -> str:
        year = self.number(2019, 2027)
        month, day = self.number(1, 12), self.number(1, 28)
        hour, minute, second = self.number(0, 23), self.number(0, 59), self.number(0, 59)
        micro = self.number(0, 999999)
        milli = micro // 1000
        offset = self.pick(("+00:00", "-05:00", "+02:00", "+05:30", "-08:00", "+09:00"))
        date = f"{year}-{month:02d}-{day:02d}"
        clock = f"{hour:02d}:{minute:02d}:{second:02d}"
        epoch = self.number(1_550_000_000, 1_820_000_000)
        forms = (
            f"{date}T{clock}Z",
            f"{date}T{clock}.{milli:03d}Z",
            f"{date}T{clock}{offset}",
            f"{date}T{clock}.{micro:06d}{offset}",
            f"{date} {clock}",
            f"{date} {clock}.{micro:06d}{offset[:3]}",
            f"{date}",
            f"{day:02d}/{month:02d}/{year} {clock}",
            f"{month}/{day}/{year} {hour % 12 + 1}:{minute:02d} PM",
            f"Wed, {day:02d} Dec {year} {clock} +0000",
            f"{epoch}",
            f"{epoch}{milli:03d}",
            f"{year}{month:02d}{day:02d}T{hour:02d}{minute:02d}{second:02d}Z",
        )
        return self.pick(forms)


# ISO 13616 BBAN layouts: n digit, a letter, c digit or letter.
IBAN_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("DE", "n" * 18),
    ("FR", "n" * 10 + "c" * 11 + "nn"),
    ("GB", "aaaa" + "n" * 14),
    ("ES", "n" * 20),
    ("IT", "a" + "n" * 10 + "c" * 12),
    ("NL", "aaaa" + "n" * 10),
    ("BE", "n" * 12),
    ("CH", "n" * 5 + "c" * 12),
    ("AT", "n" * 16),
    ("PL", "n" * 24),
    ("SE", "n" * 20),
    ("PT", "n" * 21),
    ("IE", "aaaa" + "n" * 14),
    ("DK", "n" * 14),
    ("NO", "n" * 11),
    ("FI", "n" * 14),
    ("CZ", "n" * 20),
    ("HU", "n" * 24),
    ("LU", "nnn" + "c" * 13),
    ("GR", "n" * 7 + "c" * 16),
    ("SA", "nn" + "c" * 18),
    ("TR", "n" * 5 + "0" + "c" * 16),
)


def non_card() -> list[Line]:
    w = _Writer(SEED)
    d = w.digits
    lines: list[Line] = []

    def add(category: str, count: int, make: Callable[[], str]) -> None:
        lines.extend((category, make()) for _ in range(count))

    def us_address() -> str:
        city, state = w.pick(CITIES_US)
        unit = f", Apt {w.number(1, 40)}{w.pick('ABCD')}" if w.number(0, 2) == 0 else ""
        return f"{w.number(1, 9999)} {w.pick(STREETS)}{unit}, {city}, {state} {d(5)}"

    add("address/us", 250, us_address)
    add("address/us with phone", 100, lambda: f"{us_address()} · tel. {w.phone()}")
    add(
        "address/uk",
        120,
        lambda: (
            f"Flat {w.number(1, 30)}, {w.number(1, 200)} {w.pick(STREETS)}, London "
            f"{w.pick(('SW1A', 'EC2V', 'N1', 'SE15', 'W11'))} {d(1)}{w.pick('ABDEFG')}"
            f"{w.pick('HJLNPQ')}"
        ),
    )
    add(
        "address/de",
        120,
        lambda: f"{w.pick(STREETS)} {w.number(1, 180)}, {d(5)} Berlin, Tel. +49 30 {d(8)}",
    )
    add(
        "address/fr",
        100,
        lambda: f"{w.number(1, 120)} {w.pick(STREETS)}, {d(5)} Paris Cedex {d(2)}",
    )
    add(
        "address/jp",
        80,
        lambda: (
            f"〒{d(3)}-{d(4)} 東京都千代田区丸の内{w.number(1, 3)}-{w.number(1, 9)}-"
            f"{w.number(1, 30)}"
        ),
    )
    add(
        "address/br",
        80,
        lambda: (
            f"Rua {w.pick(WORDS).title()}, {w.number(1, 3000)} - apto {w.number(1, 400)}, "
            f"São Paulo - SP, {d(5)}-{d(3)}"
        ),
    )
    add(
        "address/in",
        80,
        lambda: (
            f"Flat {w.number(1, 900)}, Block {w.pick('ABCDE')}, Sector {w.number(1, 60)}, "
            f"Noida, UP {d(6)}"
        ),
    )
    add(
        "invoice",
        500,
        lambda: w.pick(
            (
                f"INV-{w.number(2019, 2027)}-{d(6)}",
                f"Invoice #{w.number(2019, 2027)}/{w.number(1, 12):02d}/{d(5)}",
                f"Rechnung Nr. RE-{w.number(2019, 2027)}-{d(2)}-{d(4)}",
                f"Facture n° F{w.number(2019, 2027)}-{d(6)}",
                f"INV#{d(8)}",
                f"Invoice {d(10)} dated {w.number(1, 28)}.{w.number(1, 12)}.2024",
                f"Bill {w.number(2019, 2027)}{w.number(1, 12):02d}-{d(5)} for {w.pick(WORDS)}",
            )
        ),
    )
    add(
        "order",
        500,
        lambda: w.pick(
            (
                f"Order {d(3, True)}-{d(7)}-{d(7)}",
                f"Order #{w.number(1001, 99999)}",
                f"eBay order {d(2)}-{d(5)}-{d(5)}",
                f"PO-45{d(8)}",
                f"Order {w.number(2019, 2027)}-{w.number(1, 12):02d}-{w.number(1, 28):02d}-{d(6)}",
                f"SO{d(9)} / line {w.number(1, 40)}",
                f"Work order WO-{d(5)}, milestone {w.number(1, 9)} of {w.number(2, 9)}",
            )
        ),
    )
    add("phone", 900, w.phone)
    add("iban", 450, w.iban)
    add(
        "uuid",
        400,
        lambda: w.pick(
            (
                str(uuid.UUID(int=w.random.getrandbits(128), version=4)),
                str(uuid.UUID(int=w.random.getrandbits(128), version=4)).upper(),
                "{" + str(uuid.UUID(int=w.random.getrandbits(128), version=4)) + "}",
                f"urn:uuid:{uuid.UUID(int=w.random.getrandbits(128), version=4)}",
            )
        ),
    )
    add("timestamp", 650, w.timestamp)
    add(
        "tracking",
        350,
        lambda: w.pick(
            (
                f"1Z{w.pick(('999AA1', '12345E', 'A12B34'))}{d(10)}",
                f"9400 1{d(3)} {d(4)} {d(4)} {d(4)} {d(2)}",
                f"{d(12)}",
                f"FedEx {d(4)} {d(4)} {d(4)}",
                f"DHL {d(10)}",
                f"RR{d(9)}GB",
                f"JD{d(18)}",
            )
        ),
    )
    add(
        "identifier",
        450,
        lambda: w.pick(
            (
                f"ISBN 978-{d(1)}-{d(3)}-{d(5)}-{d(1)}",
                f"EAN {d(13)}",
                f"GTIN {d(14)}",
                f"VAT DE{d(9)}",
                f"SSN {d(3)}-{d(2)}-{d(4)}",
                f"Routing {d(9)}, account {d(12)}",
                f"BIC DEUTDEFF{d(3)}",
                f"pi_3{w.pick(('OZk', 'Pq8', 'Nx2'))}{d(4)}L{d(6)}Jk{d(4)}",
                f"SKU-{d(5)}-{w.pick(('XL', 'M', 'S'))}",
                f"v{w.number(1, 20)}.{w.number(0, 40)}.{w.number(0, 99)}",
                f"Permit {w.number(2019, 2027)}-{d(6)}-BLD",
            )
        ),
    )
    add(
        "network",
        250,
        lambda: w.pick(
            (
                f"{w.number(1, 223)}.{w.number(0, 255)}.{w.number(0, 255)}.{w.number(1, 254)}",
                f"{w.number(1, 223)}.{w.number(0, 255)}.{w.number(0, 255)}.{w.number(1, 254)}, "
                f"10.{w.number(0, 255)}.{w.number(0, 255)}.{w.number(1, 254)}",
                f"2001:db8:{w.random.getrandbits(16):x}::{w.random.getrandbits(16):x}",
                f"fe80::{w.random.getrandbits(16):x}:{w.random.getrandbits(16):x}",
            )
        ),
    )
    add(
        "amount",
        250,
        lambda: w.pick(
            (
                f"${w.number(1, 99)},{d(3)}.{d(2)}",
                f"{w.number(1, 999)}.{d(3)},{d(2)} EUR",
                f"¥{w.number(1, 999)},{d(3)}",
                f"₹{w.number(1, 99)},{d(2)},{d(3)}.{d(2)}",
                f"{w.number(1, 9)} \u00d7 ${w.number(10, 999)}.{d(2)} "
                f"= ${w.number(100, 9999)}.{d(2)}",
            )
        ),
    )

    def note() -> str:
        templates = (
            "Paid ${a},{b}.{c} on {date}; balance {e}.{c} due {m}/{day}",
            "Delivered {q} boxes of {word} on {m}/{day} at {h}:{mi}, {q2} missing",
            "Called {phone} twice, left a message about the {word}",
            "Invoice INV-{y}-{inv} covers the {word} and the {word2}; see order {o}",
            "Milestone {q} of {q2}: {word} done, inspection {date} {h}:{mi}",
            "Refund of {a}.{c} USD to IBAN {iban} requested {date}",
            "Contractor on site {m}/{day} {h}:{mi}-{h2}:{mi}, crew of {q}",
            "Dispute: {word} damaged, photos taken {date} {h}:{mi}:{s}, ticket #{inv}",
        )
        return w.pick(templates).format(
            a=w.number(1, 99),
            b=d(3),
            c=d(2),
            e=w.number(100, 99999),
            date=f"{w.number(2019, 2027)}-{w.number(1, 12):02d}-{w.number(1, 28):02d}",
            m=w.number(1, 12),
            day=w.number(1, 28),
            q=w.number(1, 9),
            q2=w.number(2, 20),
            h=w.number(7, 18),
            h2=w.number(12, 20),
            mi=f"{w.number(0, 59):02d}",
            s=f"{w.number(0, 59):02d}",
            y=w.number(2019, 2027),
            inv=d(6),
            o=f"{d(3, True)}-{d(7)}-{d(7)}",
            word=w.pick(WORDS),
            word2=w.pick(WORDS),
            phone=w.phone(),
            iban=w.iban(),
        )

    add("note", 600, note)
    add(
        "other script",
        300,
        lambda: w.pick(
            (
                f"{w.number(2019, 2027)}年{w.number(1, 12)}月{w.number(1, 28)}日"
                f"{w.number(0, 23)}時{w.number(0, 59)}分 入金確認 {w.number(1, 99)},{d(3)}円",
                f"订单号 {d(3)} {d(4)} 已于 {w.number(1, 12)}月{w.number(1, 28)}日发货",
                "تم الدفع في "
                + "".join(chr(0x0660 + int(c)) for c in f"{w.number(2019, 2027)}")
                + "/"
                + "".join(chr(0x0660 + int(c)) for c in f"{w.number(1, 12):02d}")
                + "/"
                + "".join(chr(0x0660 + int(c)) for c in f"{w.number(1, 28):02d}"),
                f"Заказ № {d(6)} от {w.number(1, 28)}.{w.number(1, 12):02d}.{w.number(2019, 2027)}",
                f"Lieferung {w.number(1, 28)}.{w.number(1, 12)}.{w.number(2019, 2027)}, "
                f"Kunden-Nr. {d(7)}",
            )
        ),
    )
    return lines


# Characters that some readers take for a line break: escaped, so that a line is a line.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _jsonl(lines: list[Line]) -> Iterator[str]:
    for category, text in lines:
        line = json.dumps({"category": category, "text": text}, ensure_ascii=False)
        for char, escape in _LINE_BREAKS.items():
            line = line.replace(char, escape)
        yield line + "\n"


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / NON_CARD_FILE).write_text("".join(_jsonl(non_card())), encoding="utf-8")
    (directory / CARDS_FILE).write_text("".join(_jsonl(cards())), encoding="utf-8")


def read(path: Path) -> list[Line]:
    lines: list[Line] = []
    for raw in path.read_text(encoding="utf-8").split("\n"):
        if not raw:
            continue
        item = json.loads(raw)
        lines.append((str(item["category"]), str(item["text"])))
    return lines


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/data"))
