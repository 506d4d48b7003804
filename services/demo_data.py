"""The demo's content: the facilitator, the convoy, its three companies and representatives, and
four weeks of scripted history (reports, comments, kudos), in German. services/demo.py loads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas import api
from schemas.values import Cadence

Outcome = Literal["done", "partly", "not_yet"]

TIMEZONE = "Europe/Berlin"
CADENCE = Cadence(frequency="weekly", weekday="mon", local_time="09:00", window_hours=72)
HISTORY_WEEKS = 4
CONVOY = api.NewConvoy(
    name="Digital-Konvoi Nord",
    theme="Digitale Kundenwege und Abläufe in Handwerk, Handel und Fertigung",
    description=(
        "Drei Betriebe aus dem Norden digitalisieren je ein Vorhaben und berichten sich jeden Montag "
        "gegenseitig, wie weit sie sind. Begleitet vom Kompetenzzentrum Digitaler Mittelstand Nord."
    ),
    cadence=CADENCE,
    timezone=TIMEZONE,
    language="de",
)


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    email: str
    role: str


@dataclass(frozen=True)
class Company:
    key: str
    company: api.NewCompany
    project: api.ProjectIn


FACILITATOR = Person(
    "miriam", "Miriam Kessler", "miriam.kessler@kompetenzzentrum.example", "Moderatorin, Kompetenzzentrum"
)
COMPANIES = (
    Company(
        "brandt",
        api.NewCompany(
            name="Sanitär Brandt GmbH", sector="Handwerk (Sanitär, Heizung)", size_class="10-49", region="HH"
        ),
        api.ProjectIn(
            title="Wartungstermine online buchen",
            goal="Kundinnen und Kunden buchen Wartung und Badberatung selbst; weniger Telefon in der Werkstatt.",
            project_type="online_booking",
        ),
    ),
    Company(
        "lindner",
        api.NewCompany(name="Modehaus Lindner", sector="Einzelhandel (Mode)", size_class="1-9", region="SH"),
        api.ProjectIn(
            title="Onlineshop neben dem Laden",
            goal="Strick und Accessoires auch online verkaufen, mit Versand oder Abholung im Laden.",
            project_type="web_shop",
        ),
    ),
    Company(
        "oezdemir",
        api.NewCompany(name="Metallbau Özdemir KG", sector="Metallverarbeitung", size_class="10-49", region="NI"),
        api.ProjectIn(
            title="Lager mit Barcode statt Zettel",
            goal="Jederzeit wissen, was wo liegt, und Kleinteile rechtzeitig nachbestellen.",
            project_type="digital_stock",
        ),
    ),
)
REPRESENTATIVES = {
    "brandt": Person("brandt", "Anna Brandt", "anna.brandt@sanitaer-brandt.example", "Sanitär Brandt GmbH"),
    "lindner": Person("lindner", "Sabine Lindner", "sabine.lindner@modehaus-lindner.example", "Modehaus Lindner"),
    "oezdemir": Person("oezdemir", "Emre Özdemir", "emre.oezdemir@metallbau-oezdemir.example", "Metallbau Özdemir KG"),
}
PEOPLE = (FACILITATOR, *REPRESENTATIVES.values())


@dataclass(frozen=True)
class Entry:
    """One company's report of one cycle; milestones by catalogue key; reviews of its previous report's commitments."""

    company: str
    cycle: int
    hours: float
    """Submitted this many hours after the cycle's check-in (the window is 72 hours)."""
    done: str
    mood: int
    next: str = ""
    blockers: str = ""
    help_topic: str = ""
    help_milestone: str | None = None
    milestones: tuple[tuple[str, api.MilestoneStatus], ...] = ()
    commitments: tuple[str, ...] = ()
    reviews: tuple[tuple[Outcome, str], ...] = ()
    comments: tuple[tuple[str, float, str], ...] = ()
    """(person key, hours after the report, text)."""
    kudos: tuple[str, ...] = ()


HISTORY = (
    # --- cycle 0 ---
    Entry(
        "oezdemir",
        0,
        8,
        "Lager aufgenommen: drei Lagerorte, gut 900 Artikel, Entnahmen bisher auf Zetteln. Wichtigste Erkenntnis: "
        "Die meisten Fehlbestände gibt es bei **Kleinteilen** (Schrauben, Dübel, Nieten).",
        3,
        next="Zwei Lager-Apps mit Barcode-Scan testen.",
        milestones=(("digital_stock.map_processes", "done"),),
        commitments=("Zwei Lager-Apps testen",),
        comments=(("miriam", 16, "Sehr gute Bestandsaufnahme, genau so fängt man an."),),
    ),
    Entry(
        "brandt",
        0,
        31,
        "Auftakt im Team: Online buchbar werden nur **Wartungstermine** (Heizung, Therme) und die Erstberatung "
        "fürs Bad; der Notdienst bleibt am Telefon. Vorlauf mindestens zwei Werktage, Buchung rund um die Uhr.",
        4,
        next="Drei Buchungstools mit Testzugang vergleichen.",
        milestones=(("online_booking.clarify_requirements", "done"),),
        commitments=("Drei Buchungstools mit Testzugang ausprobieren",),
        kudos=("oezdemir",),
    ),
    Entry(
        "lindner",
        0,
        58,
        "Sortiment für den Shop festgelegt: zum Start Strick und Accessoires, rund 120 Artikel. Versand "
        "deutschlandweit, dazu Abholung im Laden.",
        4,
        next="Shopsysteme vergleichen; wichtig ist die Anbindung an unsere Ladenkasse.",
        milestones=(("web_shop.define_range", "done"), ("web_shop.choose_platform", "in_progress")),
        commitments=("Zwei Shopsysteme mit Kassenanbindung vergleichen",),
        kudos=("brandt",),
    ),
    # --- cycle 1 (Modehaus Lindner stays silent) ---
    Entry(
        "oezdemir",
        1,
        25,
        "Lager-App ausgewählt: läuft auf den vorhandenen Android-Handys, gescannt wird mit der Kamera. "
        "Kosten 29 € im Monat.",
        4,
        next="Artikelstamm für die Kleinteile anlegen.",
        milestones=(("digital_stock.choose_system", "done"), ("digital_stock.article_master", "in_progress")),
        commitments=("Artikelstamm für Kleinteile anlegen",),
        reviews=(("done", ""),),
        kudos=("brandt",),
    ),
    Entry(
        "brandt",
        1,
        28,
        "Drei Tools ausprobiert. Entschieden haben wir uns für eines mit Outlook-Anbindung und SMS-Erinnerung, "
        "monatlich kündbar, Server in Deutschland.",
        4,
        next="Die Kalender der Monteure anbinden.",
        milestones=(("online_booking.choose_tool", "done"), ("online_booking.connect_calendar", "in_progress")),
        commitments=("Kalender von zwei Monteuren testweise anbinden",),
        reviews=(("done", ""),),
        comments=(
            (
                "lindner",
                5,
                "Welches Tool ist es geworden? Für Termine in unserer Änderungsschneiderei suchen wir etwas Ähnliches.",
            ),
            ("brandt", 7, "Ich bringe Ihnen die Liste zum nächsten Treffen mit. Der Testzugang war kostenlos."),
        ),
    ),
    # --- cycle 2 ---
    Entry(
        "oezdemir",
        2,
        30,
        "600 Kleinteile im Artikelstamm, importiert aus den Excel-Listen unserer Lieferanten statt abgetippt.",
        4,
        next="Restliche Artikel anlegen, Regale beschriften.",
        milestones=(("digital_stock.article_master", "in_progress"),),
        commitments=("Restliche Artikel anlegen", "Regale im Hauptlager beschriften"),
        reviews=(("done", ""),),
        comments=(("lindner", 10, "Import statt Abtippen: Das merke ich mir für unsere Produktdaten!"),),
        kudos=("brandt", "lindner"),
    ),
    Entry(
        "brandt",
        2,
        50,
        "Kalender beider Monteure angebunden. Buchungen kommen an, aber Termine aus Outlook tauchen im "
        "Buchungstool doppelt auf.",
        2,
        next="Sync-Problem lösen, dann Leistungen und Pufferzeiten pflegen.",
        blockers="Die Synchronisation mit Outlook legt Termine doppelt an; der Support des Anbieters antwortet "
        "nur per Ticket, bisher gar nicht.",
        help_topic="Outlook-Kalender mit dem Buchungstool synchronisieren. Wer hat das schon eingerichtet?",
        help_milestone="online_booking.connect_calendar",
        milestones=(("online_booking.connect_calendar", "blocked"),),
        commitments=("Sync-Problem mit dem Anbieter klären",),
        reviews=(("done", ""),),
        comments=(
            (
                "oezdemir",
                3,
                "Das hatten wir mit unserer Lager-App genauso. Stellen Sie die Synchronisation auf "
                "*nur in eine Richtung* (Buchungstool → Outlook), dann gibt es keine Doppelungen. Rufen Sie gern an!",
            ),
            ("miriam", 20, "Danke, Herr Özdemir! Frau Brandt, sonst schauen wir es uns beim nächsten Sprechtag an."),
        ),
    ),
    Entry(
        "lindner",
        2,
        75,  # after the 72-hour window: late
        "Shopsystem gewählt: Es spricht mit unserer Kasse, der Bestand wird also nicht doppelt gepflegt. Erste "
        "40 Produkte mit Fotos eingestellt; das Fotografieren dauert länger als gedacht.",
        3,
        next="Restliche Produkte einstellen, Zahlungsarten einrichten.",
        milestones=(("web_shop.choose_platform", "done"), ("web_shop.product_data", "in_progress")),
        commitments=("60 weitere Produkte einstellen",),
        reviews=(("done", ""),),
        comments=(
            (
                "miriam",
                4,
                "Schön, dass es weitergeht! Tipp fürs Fotografieren: ein fester Platz am Fenster und ein "
                "Stativ sparen viel Zeit.",
            ),
        ),
    ),
    # --- cycle 3 ---
    Entry(
        "oezdemir",
        3,
        9,
        "Alle 900 Artikel angelegt. Regale im Hauptlager mit Barcodes beschriftet, das Außenlager folgt.",
        5,
        next="Anfangsinventur mit der App im Hauptlager.",
        milestones=(("digital_stock.article_master", "done"), ("digital_stock.labels", "in_progress")),
        commitments=("Anfangsinventur im Hauptlager mit der App",),
        reviews=(("done", ""), ("done", "")),
        kudos=("brandt", "lindner"),
    ),
    Entry(
        "brandt",
        3,
        26,
        "Sync-Problem gelöst, der Tipp von Emre Özdemir war goldrichtig: nur noch in eine Richtung "
        "synchronisieren. Leistungen mit Dauer und Pufferzeiten gepflegt (Wartung Therme 60 Min., "
        "Erstberatung Bad 45 Min.).",
        4,
        next="Datenschutz prüfen und fünf Stammkunden für den Testlauf gewinnen.",
        milestones=(
            ("online_booking.connect_calendar", "done"),
            ("online_booking.maintain_services", "done"),
            ("online_booking.check_privacy", "in_progress"),
        ),
        commitments=("AV-Vertrag mit dem Tool-Anbieter abschließen", "Fünf Stammkunden für den Testlauf ansprechen"),
        reviews=(("done", ""),),
        comments=(("lindner", 6, "Glückwunsch! Das macht Mut für unseren Shop."),),
        kudos=("oezdemir", "lindner"),
    ),
    Entry(
        "lindner",
        3,
        54,
        "Weitere 55 Produkte online. Zahlungsarten eingerichtet: PayPal, Kreditkarte und Rechnung; Versand mit "
        "DHL, Abholung im Laden kostenlos.",
        3,
        next="Rechtstexte, dann Testbestellungen.",
        help_topic="Rechtstexte für den Shop (AGB, Widerrufsbelehrung). Wer hat gute Erfahrungen mit einem "
        "Rechtstexte-Dienst?",
        help_milestone="web_shop.legal_texts",
        milestones=(("web_shop.payment_shipping", "done"),),
        commitments=("Restliche Fotos machen", "Zwei Angebote für Rechtstexte einholen"),
        reviews=(("partly", "55 von 60, für die Schals fehlen noch Fotos."),),
        kudos=("brandt",),
    ),
)
"""Four weeks of history, in the order it happened within each cycle."""

LIVE = Entry(
    "oezdemir",
    HISTORY_WEEKS,
    0,
    "Anfangsinventur im Hauptlager mit der App: **zwei Stunden statt eines ganzen Tages**. Dabei drei Fehlbestände "
    "bei Schrauben entdeckt und gleich nachbestellt.",
    5,
    next="Außenlager beschriften, dann die Kollegen in der Werkstatt einweisen.",
    milestones=(("digital_stock.initial_count", "in_progress"),),
    commitments=("Außenlager beschriften", "Kurze Einweisung für die Werkstatt vorbereiten"),
    reviews=(("done", ""),),
)
"""This week's report of Metallbau Özdemir, posted the ordinary way (the others have not reported yet)."""
