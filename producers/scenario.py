"""The seed scenario's vocabulary for synthetic bulletins: places, names, routes and texts.

Fiction drawn from public, open-source patterns of the region (Caribbean and Eastern Pacific
cocaine routes, maras, FARC dissidents, the Darién crossing...). Every person, vessel,
phone, account, wallet and domain here is invented; IPs are RFC 5737 documentation ranges.
Texts are ``str.format`` templates over the slots the generator fills (see ``synthetic``).
"""

from __future__ import annotations

from dataclasses import dataclass

# A place: country code, name, latitude, longitude.
Place = tuple[str, str, float, float]

COUNTRY_NAMES: dict[str, tuple[str, str]] = {
    "BZ": ("Belize", "Belice"),
    "CA": ("Canada", "Canadá"),
    "CO": ("Colombia", "Colombia"),
    "CR": ("Costa Rica", "Costa Rica"),
    "DO": ("the Dominican Republic", "República Dominicana"),
    "SV": ("El Salvador", "El Salvador"),
    "US": ("the United States", "Estados Unidos"),
    "GT": ("Guatemala", "Guatemala"),
    "HN": ("Honduras", "Honduras"),
    "MX": ("Mexico", "México"),
    "PA": ("Panama", "Panamá"),
    "VE": ("Venezuela", "Venezuela"),
    "EC": ("Ecuador", "Ecuador"),
    "NI": ("Nicaragua", "Nicaragua"),
    "JM": ("Jamaica", "Jamaica"),
    "HT": ("Haiti", "Haití"),
    "PR": ("Puerto Rico", "Puerto Rico"),
}

COASTS: list[Place] = [
    ("PA", "Bocas del Toro", 9.3403, -82.2420),
    ("PA", "Colón, Costa Arriba", 9.5583, -79.6644),
    ("PA", "Guna Yala, Cartí", 9.4563, -78.9781),
    ("PA", "Isla del Rey, Archipiélago de las Perlas", 8.3833, -78.9000),
    ("CR", "Puerto Limón", 9.9907, -83.0359),
    ("CR", "Golfo Dulce", 8.5500, -83.2500),
    ("CO", "Tumaco", 1.8067, -78.7647),
    ("CO", "Golfo de Urabá, Turbo", 8.0926, -76.7282),
    ("CO", "La Guajira, Manaure", 11.7750, -72.4447),
    ("HN", "La Mosquitia, Puerto Lempira", 15.2667, -83.7667),
    ("HN", "Islas de la Bahía, Roatán", 16.3167, -86.5333),
    ("GT", "Puerto San José", 13.9250, -90.8236),
    ("MX", "Puerto Chiapas", 14.7050, -92.4030),
    ("MX", "Quintana Roo, Mahahual", 18.7167, -87.7000),
    ("BZ", "Belize City", 17.4986, -88.1886),
    ("DO", "Punta Caucedo", 18.4250, -69.6333),
    ("DO", "Pedernales", 18.0333, -71.7500),
    ("SV", "Golfo de Fonseca", 13.1667, -87.7500),
    ("US", "Eastern Pacific, 300 nm SW of Guatemala", 10.5000, -93.5000),
]

PORTS: list[Place] = [
    ("PA", "Manzanillo International Terminal, Colón", 9.3600, -79.8770),
    ("PA", "Puerto de Balboa", 8.9500, -79.5667),
    ("DO", "Puerto Multimodal Caucedo", 18.4250, -69.6333),
    ("DO", "Puerto de Haina", 18.4167, -70.0167),
    ("CR", "Terminal de Contenedores de Moín", 10.0013, -83.0790),
    ("GT", "Puerto Quetzal", 13.9167, -90.7833),
    ("HN", "Puerto Cortés", 15.8500, -87.9500),
    ("MX", "Puerto de Manzanillo, Colima", 19.0522, -104.3158),
    ("CO", "Puerto de Buenaventura", 3.8801, -77.0312),
    ("CA", "Port of Montreal", 45.5500, -73.5167),
    ("CA", "Port of Vancouver", 49.2890, -123.1100),
    ("US", "Port Everglades, Florida", 26.0910, -80.1210),
]

AIRSTRIPS: list[Place] = [
    ("GT", "Petén, Laguna del Tigre", 17.5000, -90.7500),
    ("HN", "Gracias a Dios, Brus Laguna", 15.7500, -84.4833),
    ("BZ", "Orange Walk, Shipyard", 17.9167, -88.6000),
    ("MX", "Chiapas, Marqués de Comillas", 16.2000, -90.8333),
    ("VE", "Apure, Elorza", 7.0600, -69.4900),
]

GANG_PLACES: list[Place] = [
    ("HN", "San Pedro Sula, Chamelecón", 15.4500, -88.0333),
    ("HN", "Tegucigalpa, colonia Villanueva", 14.0667, -87.1667),
    ("SV", "Soyapango", 13.7100, -89.1400),
    ("SV", "San Miguel", 13.4833, -88.1833),
    ("GT", "Villa Nueva", 14.5269, -90.5875),
    ("MX", "Tapachula", 14.9036, -92.2630),
    ("US", "Houston, Texas", 29.7604, -95.3698),
]

BORDER_PLACES: list[Place] = [
    ("PA", "Darién, Bajo Chiquito", 8.1386, -77.6750),
    ("PA", "Darién, Lajas Blancas", 8.2667, -77.8833),
    ("PA", "Darién, Yaviza", 8.1553, -77.6917),
    ("PA", "Puerto Obaldía", 8.6667, -77.4167),
    ("CO", "Acandí, Chocó", 8.5117, -77.2786),
    ("CO", "Necoclí, Antioquia", 8.4261, -76.7839),
    ("CO", "Capurganá, Chocó", 8.6333, -77.3500),
    ("GT", "Tecún Umán", 14.6775, -92.1417),
    ("MX", "Ciudad Hidalgo, Chiapas", 14.6796, -92.1507),
    ("CR", "Paso Canoas", 8.5333, -82.8333),
    ("HN", "Trojes, El Paraíso", 14.0667, -85.9833),
]

CAPITALS: list[Place] = [
    ("PA", "Ciudad de Panamá", 8.9824, -79.5199),
    ("CR", "San José", 9.9281, -84.0907),
    ("DO", "Santo Domingo", 18.4861, -69.9312),
    ("GT", "Ciudad de Guatemala", 14.6349, -90.5069),
    ("HN", "Tegucigalpa", 14.0723, -87.1921),
    ("SV", "San Salvador", 13.6929, -89.2182),
    ("CO", "Bogotá", 4.7110, -74.0721),
    ("MX", "Ciudad de México", 19.4326, -99.1332),
    ("BZ", "Belmopan", 17.2510, -88.7590),
]

HURRICANE_PLACES: list[Place] = [
    ("HN", "Islas de la Bahía", 16.3167, -86.5333),
    ("BZ", "Belize City", 17.4986, -88.1886),
    ("DO", "Samaná", 19.2056, -69.3364),
    ("MX", "Chetumal", 18.5001, -88.2961),
    ("PA", "Bocas del Toro", 9.3403, -82.2420),
    ("GT", "Izabal, Puerto Barrios", 15.7278, -88.5944),
]

VESSELS = [
    "Sirena del Mar",
    "Don Chepe II",
    "Estrella del Caribe",
    "La Morena",
    "Capitán Nemo",
    "Niña Bonita",
    "Mar Azul III",
    "San Judas",
    "Golden Pelican",
    "Lucky Seven",
]
PERSONS = [
    ("Jhon Jairo Mosquera Palacios", "alias 'El Costeño'"),
    ("Wilmer Antonio Reyes Cruz", "alias 'Chepe'"),
    ("Carlos Eduardo Batista Peña", "alias 'El Dominicano'"),
    ("Marvin Josué Hernández López", "alias 'Psycho'"),
    ("Yeison Andrés Cuesta Rentería", "alias 'Mono'"),
    ("Luis Fernando Quiñónez Angulo", "alias 'Pescador'"),
    ("Rosa Elvira Castillo Méndez", "alias 'La Tía'"),
    ("Kevin Alexander Martínez Ruiz", "alias 'Little Boy'"),
]
ORGANIZATIONS = {
    "gang": ["MS-13, clica Hollywood Locos", "Barrio 18 Sureños", "Barrio 18 Revolucionarios"],
    "armed": ["Frente 57 (disidencia FARC)", "Frente Oliver Sinisterra", "Clan del Golfo (EGC)"],
    "drug": ["Red Caribe Sur", "Cartel del Pacífico, célula Chiapas", "Los Cachiros (remanente)"],
    "smuggling": ["Red de coyotes Necoclí-Acandí", "Red Los Lancheros", "Organización Tecún"],
    "cyber": ["LockBit affiliate 'ShadowTaxa'", "Grupo ransomware 'Vice Society'"],
    "laundering": ["Importadora Atlántica Zona Libre S.A.", "Inversiones Caribe Sol Ltda."],
}
COMMODITIES = {
    "drug": [("cocaine", "kg"), ("cocaine hydrochloride", "kg"), ("marijuana", "kg")],
    "arms": [("AR-15 rifles", "units"), ("9 mm ammunition", "rounds"), ("grenades", "units")],
    "cash": [("US dollars in cash", "USD")],
}
MINISTRIES = [
    ("Ministry of Economy and Finance", "Ministerio de Economía y Finanzas"),
    ("Ministry of Health", "Ministerio de Salud"),
    ("Ministry of Public Works", "Ministerio de Obras Públicas"),
    ("Customs Authority", "Autoridad de Aduanas"),
]
STORM_NAMES = ["Ana", "Bret", "Cindy", "Don", "Emily", "Franklin", "Gert", "Idalia", "Lee"]
MALWARE_DOMAINS = ["update-portal.example.net", "mef-secure.example.com", "cdn-sync.example.org"]


@dataclass(frozen=True)
class Texts:
    """A bulletin's words in one language."""

    title: str
    summary: str
    details: str


@dataclass(frozen=True)
class Theme:
    """One kind of report: its category, where it happens and how it reads in en/es."""

    name: str
    category: str
    weight: int
    places: list[Place]
    source_types: tuple[str, ...]
    route_mode: str | None
    en: Texts
    es: Texts


THEMES: list[Theme] = [
    Theme(
        "go_fast",
        "DRUG_TRAFFICKING",
        14,
        COASTS,
        ("PATROL", "IMINT", "LIAISON", "HUMINT"),
        "SEA",
        Texts(
            "Go-fast boat with suspected cocaine off {place}",
            "A go-fast boat carrying an estimated {qty:g} {unit} of cocaine is expected to "
            "move from {from_en} toward {to_en} within {hours} hours, hugging the coast near "
            "{place}.",
            "Maritime patrol reporting describes a {length} m go-fast vessel, '{vessel}', with "
            "{engines} outboard engines and a crew of {crew}. It refuels at sea from a fishing "
            "vessel and runs at night without lights. Coordinator: {person} ({alias}), linked "
            "to {org}.",
        ),
        Texts(
            "Lancha rápida con presunta cocaína frente a {place}",
            "Una lancha rápida con unos {qty:g} {unit} de cocaína se desplazaría desde "
            "{from_es} hacia {to_es} en las próximas {hours} horas, bordeando la costa cerca "
            "de {place}.",
            "Reportes de patrullaje marítimo describen una embarcación tipo go-fast de {length} "
            "m, '{vessel}', con {engines} motores fuera de borda y {crew} tripulantes. Se "
            "reabastece en altamar desde un pesquero y navega de noche sin luces. Coordinador: "
            "{person} ({alias}), vinculado a {org}.",
        ),
    ),
    Theme(
        "port_seizure",
        "DRUG_TRAFFICKING",
        10,
        PORTS,
        ("SEIZURE", "PATROL", "LIAISON"),
        "SEA",
        Texts(
            "{qty:g} {unit} of cocaine seized in a container at {place}",
            "Authorities seized {qty:g} {unit} of cocaine hidden in a refrigerated container "
            "of bananas bound for {to_en}, shipped from {from_en}.",
            "Scanner anomaly on container {container}; {packages} packages with a scorpion "
            "logo behind the cargo. The consignee is a shell company registered three months "
            "ago. The contamination method (rip-on/rip-off) points to port insiders; {person} "
            "({alias}) is the suspected broker for {org}.",
        ),
        Texts(
            "Decomiso de {qty:g} {unit} de cocaína en contenedor en {place}",
            "Las autoridades incautaron {qty:g} {unit} de cocaína ocultos en un contenedor "
            "refrigerado de banano con destino a {to_es}, embarcado desde {from_es}.",
            "Anomalía en el escáner del contenedor {container}; {packages} paquetes con logo "
            "de escorpión detrás de la carga. El consignatario es una empresa de fachada "
            "registrada hace tres meses. El método de contaminación (gancho ciego) apunta a "
            "personal portuario; {person} ({alias}) sería el enlace de {org}.",
        ),
    ),
    Theme(
        "narco_flight",
        "DRUG_TRAFFICKING",
        5,
        AIRSTRIPS,
        ("IMINT", "SIGINT", "PATROL"),
        "AIR",
        Texts(
            "Suspect aircraft landed on a clandestine airstrip in {place}",
            "A twin-engine aircraft from {from_en} landed on an unregistered strip near "
            "{place}; the load was moved to pickups heading for {to_en}.",
            "Radar track lost over the coast at low altitude. The aircraft, tail number "
            "{tail}, was burned after unloading. Ground team of about {crew} people, "
            "coordinated by {person} ({alias}).",
        ),
        Texts(
            "Aeronave sospechosa aterrizó en pista clandestina en {place}",
            "Una aeronave bimotor procedente de {from_es} aterrizó en una pista no registrada "
            "cerca de {place}; la carga fue trasladada en pickups hacia {to_es}.",
            "Se perdió la traza de radar sobre la costa a baja altura. La aeronave, matrícula "
            "{tail}, fue incinerada tras la descarga. Equipo en tierra de unas {crew} "
            "personas, coordinado por {person} ({alias}).",
        ),
    ),
    Theme(
        "mara_cell",
        "GANGS",
        9,
        GANG_PLACES,
        ("HUMINT", "PATROL", "SIGINT", "CITIZEN_REPORT"),
        None,
        Texts(
            "{org} cell extorting transport operators in {place}",
            "A cell of {org} is collecting weekly extortion payments from bus and taxi "
            "operators in {place} and has threatened drivers who refuse to pay.",
            "About {crew} members, led by {person} ({alias}). Payments are collected through "
            "mobile wallets registered to third parties; orders come from inmates. Two "
            "arson attacks on buses in the last {hours} days are attributed to the cell.",
        ),
        Texts(
            "Célula de {org} extorsiona a transportistas en {place}",
            "Una célula de {org} cobra extorsiones semanales a operadores de buses y taxis "
            "en {place} y ha amenazado a conductores que se niegan a pagar.",
            "Unos {crew} integrantes, dirigidos por {person} ({alias}). Los cobros se hacen "
            "por billeteras móviles a nombre de terceros; las órdenes salen de centros "
            "penales. Se atribuyen a la célula dos ataques incendiarios a buses en los "
            "últimos {hours} días.",
        ),
    ),
    Theme(
        "farc_dissidents",
        "ARMED_GROUPS",
        7,
        [p for p in BORDER_PLACES if p[0] in {"PA", "CO"}],
        ("HUMINT", "PATROL", "IMINT", "LIAISON"),
        "RIVER",
        Texts(
            "Armed group movement near the Colombia-Panama border at {place}",
            "Members of {org} were sighted moving supplies along the river near {place}, "
            "close to the Colombia-Panama border.",
            "A column of about {crew} armed men with long guns and river boats was reported "
            "by local communities. They charge a toll on migrants and control a cocaine "
            "corridor to the Pacific. Field commander: {person} ({alias}).",
        ),
        Texts(
            "Movimiento de grupo armado cerca de la frontera colombo-panameña en {place}",
            "Integrantes de {org} fueron vistos trasladando suministros por el río cerca de "
            "{place}, próximo a la frontera entre Colombia y Panamá.",
            "Comunidades locales reportan una columna de unos {crew} hombres con armas largas "
            "y botes de río. Cobran peaje a migrantes y controlan un corredor de cocaína "
            "hacia el Pacífico. Cabecilla en terreno: {person} ({alias}).",
        ),
    ),
    Theme(
        "arms",
        "ARMS_TRAFFICKING",
        5,
        [*BORDER_PLACES, *PORTS[:6]],
        ("SEIZURE", "LIAISON", "FINANCIAL"),
        "LAND",
        Texts(
            "Weapons shipment moving through {place}",
            "A shipment of {qty:g} rifles bought by straw purchasers in {from_en} is moving "
            "through {place} toward {to_en}.",
            "Serial numbers were ground off; the weapons travel in the false floor of a "
            "cargo truck, plates {plate}. Buyer: {org}; logistics by {person} ({alias}).",
        ),
        Texts(
            "Cargamento de armas en tránsito por {place}",
            "Un cargamento de {qty:g} fusiles adquiridos por compradores de paja en {from_es} "
            "transita por {place} con destino a {to_es}.",
            "Los números de serie fueron limados; las armas viajan en el doble fondo de un "
            "camión de carga, placas {plate}. Comprador: {org}; logística a cargo de {person} "
            "({alias}).",
        ),
    ),
    Theme(
        "human_trafficking",
        "HUMAN_TRAFFICKING",
        4,
        [p for p in BORDER_PLACES if p[0] in {"GT", "MX", "CR", "HN"}],
        ("HUMINT", "CITIZEN_REPORT", "LIAISON"),
        "LAND",
        Texts(
            "Trafficking network recruiting young women near {place}",
            "A network is recruiting young women with false job offers and moving them "
            "through {place} toward {to_en} for sexual exploitation.",
            "Victims are lured on social media with restaurant jobs; documents are taken on "
            "arrival. Around {crew} victims identified so far. Recruiter: {person} ({alias}).",
        ),
        Texts(
            "Red de trata recluta mujeres jóvenes cerca de {place}",
            "Una red recluta mujeres jóvenes con falsas ofertas de empleo y las traslada por "
            "{place} hacia {to_es} con fines de explotación sexual.",
            "Las víctimas son captadas en redes sociales con ofertas en restaurantes; les "
            "retienen los documentos al llegar. Unas {crew} víctimas identificadas hasta "
            "ahora. Reclutadora: {person} ({alias}).",
        ),
    ),
    Theme(
        "darien_smuggling",
        "MIGRANT_SMUGGLING",
        9,
        [p for p in BORDER_PLACES if p[0] in {"PA", "CO"}],
        ("PATROL", "HUMINT", "CITIZEN_REPORT", "OSINT"),
        "MIXED",
        Texts(
            "Migrant smuggling surge through the Darién at {place}",
            "About {count} migrants a day are being moved by smugglers through the Darién "
            "jungle, arriving at {place}; many report robbery and assault on the trail.",
            "Boats leave Necoclí at dawn for Acandí and Capurganá; guides charge per person "
            "and hand groups over at the border. Payments go through phone {phone}. Network "
            "leader: {person} ({alias}), working with {org}.",
        ),
        Texts(
            "Aumento del tráfico de migrantes por el Darién en {place}",
            "Unos {count} migrantes diarios están siendo trasladados por traficantes a través "
            "de la selva del Darién hasta {place}; muchos denuncian robos y agresiones en la "
            "ruta.",
            "Las lanchas salen de Necoclí al amanecer hacia Acandí y Capurganá; los guías "
            "cobran por persona y entregan los grupos en la frontera. Los pagos se hacen al "
            "teléfono {phone}. Líder de la red: {person} ({alias}), en alianza con {org}.",
        ),
    ),
    Theme(
        "ransomware",
        "CYBER",
        6,
        CAPITALS,
        ("TECHNICAL", "OSINT", "LIAISON"),
        None,
        Texts(
            "Ransomware campaign against the {ministry_en}",
            "A ransomware affiliate is targeting the {ministry_en} in {country_en} with "
            "phishing that leads to credential theft and encryption of file servers.",
            "Initial access through a fake payroll portal; lateral movement with stolen VPN "
            "credentials; data exfiltrated before encryption. Operator: {org}. Block the "
            "listed indicators and reset VPN credentials used in the last {hours} days.",
        ),
        Texts(
            "Campaña de ransomware contra el {ministry_es}",
            "Un afiliado de ransomware ataca al {ministry_es} de {country_es} con "
            "phishing que roba credenciales y cifra los servidores de archivos.",
            "Acceso inicial por un portal de planillas falso; movimiento lateral con "
            "credenciales VPN robadas; exfiltración antes del cifrado. Operador: {org}. "
            "Bloquear los indicadores listados y renovar credenciales VPN de los últimos "
            "{hours} días.",
        ),
    ),
    Theme(
        "hurricane",
        "NATURAL_DISASTER",
        4,
        HURRICANE_PLACES,
        ("OSINT", "LIAISON"),
        None,
        Texts(
            "Hurricane {storm} warning for the Caribbean coast near {place}",
            "Hurricane {storm} (category {cat}) is expected to make landfall near {place} in "
            "about {hours} hours with winds of {wind} km/h and storm surge.",
            "Coastal posts and patrol boats should move to shelter; expect loss of "
            "communications and roads. Criminal groups have used past storms to move loads "
            "while patrols are grounded.",
        ),
        Texts(
            "Alerta por huracán {storm} en la costa caribe cerca de {place}",
            "Se espera que el huracán {storm} (categoría {cat}) toque tierra cerca de {place} "
            "en unas {hours} horas con vientos de {wind} km/h y marejada ciclónica.",
            "Los puestos costeros y las patrulleras deben resguardarse; se prevé pérdida de "
            "comunicaciones y vías. Grupos criminales han aprovechado tormentas anteriores "
            "para mover cargamentos mientras las patrullas están en tierra.",
        ),
    ),
    Theme(
        "laundering",
        "MONEY_LAUNDERING",
        4,
        [CAPITALS[0], PORTS[0], CAPITALS[2], CAPITALS[5]],
        ("FINANCIAL", "LIAISON"),
        None,
        Texts(
            "Trade-based laundering through a free-zone importer in {place}",
            "Invoices of {org} overstate electronics imports to move drug proceeds from "
            "{from_en} through {place}.",
            "Transfers of about USD {qty:g} a month split under reporting thresholds; part "
            "converted to stablecoins. Beneficial owner: {person} ({alias}).",
        ),
        Texts(
            "Lavado basado en comercio mediante importadora de zona libre en {place}",
            "Las facturas de {org} sobrevaloran importaciones de electrónicos para mover "
            "ganancias del narcotráfico desde {from_es} a través de {place}.",
            "Transferencias de unos USD {qty:g} mensuales fraccionadas bajo los umbrales de "
            "reporte; una parte se convierte en stablecoins. Beneficiario final: {person} "
            "({alias}).",
        ),
    ),
    Theme(
        "port_corruption",
        "CORRUPTION",
        3,
        PORTS[:8],
        ("HUMINT", "FINANCIAL"),
        None,
        Texts(
            "Port officials paid to clear contaminated containers at {place}",
            "Customs and port staff at {place} are paid to release containers flagged by the "
            "scanner, on behalf of {org}.",
            "Payments of about USD {qty:g} per container; the inspectors' shift roster is "
            "leaked in advance. Intermediary: {person} ({alias}).",
        ),
        Texts(
            "Funcionarios portuarios sobornados para liberar contenedores en {place}",
            "Personal de aduanas y del puerto en {place} recibe pagos para liberar "
            "contenedores señalados por el escáner, por cuenta de {org}.",
            "Pagos de unos USD {qty:g} por contenedor; el rol de turnos de los inspectores "
            "se filtra con antelación. Intermediario: {person} ({alias}).",
        ),
    ),
]
