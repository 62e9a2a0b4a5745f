"""Question/context pairs in the languages users serve: Chinese and Japanese (no spaces between
words), Arabic (right to left), Hindi (Devanagari), Russian, German, French and Spanish (diacritics),
and a CJK context long enough for several windows."""

from __future__ import annotations

PAIRS: list[tuple[str, str]] = [
    (
        "长江大桥是哪一年建成的？",
        "南京长江大桥是长江上第一座由中国自行设计和建造的双层式铁路、公路两用桥梁。大桥于1960年动工，"
        "1968年建成通车，全长6772米。它被誉为“争气桥”，是南京的标志性建筑之一。",
    ),
    (
        "东京塔有多高？",
        "东京塔位于日本东京都港区芝公园，是一座以巴黎埃菲尔铁塔为范本而建造的红白色电波塔。塔高333米，"
        "于1958年竣工，每年吸引数百万游客。",
    ),
    (
        "富士山の高さは何メートルですか？",
        "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルです。日本で最も高い山であり、"
        "2013年に世界文化遺産に登録されました。多くの登山者が夏に山頂を目指します。",
    ),
    (
        "من صمم المسجد؟",
        "صمم المهندس المعماري حسن فتحي المسجد الكبير في القرية عام ١٩٤٦. يتسع المسجد لألف مصل، "
        "وقد بني من الطوب اللبن المحلي ليبقى باردا في الصيف.",
    ),
    (
        "ताजमहल किसने बनवाया था?",
        "ताजमहल आगरा में यमुना नदी के किनारे स्थित एक सफ़ेद संगमरमर का मकबरा है। इसे मुग़ल बादशाह शाहजहाँ ने "
        "अपनी पत्नी मुमताज़ महल की याद में 1632 में बनवाना शुरू किया था।",
    ),
    (
        "Когда был основан университет?",
        "Московский государственный университет был основан в 1755 году по инициативе Михаила Ломоносова. "
        "Главное здание университета находится на Воробьёвых горах и имеет высоту 240 метров.",
    ),
    (
        "Wer hat die Brücke über die Förde gebaut?",
        "Die Brücke über die Flensburger Förde wurde 1912 von der Firma Müller & Söhne aus Lübeck gebaut. "
        "Sie ist 420 Meter lang, und täglich überqueren sie mehr als zwölftausend Fahrzeuge.",
    ),
    (
        "Où se trouve le musée ?",
        "Le musée des Beaux-Arts se trouve près de l'église Saint-Étienne, à Besançon, où l'on expose des "
        "œuvres de Courbet. Ouvert en 1694, c'est l'un des plus anciens musées de France.",
    ),
    (
        "¿Quién escribió la novela?",
        "La novela «Cien años de soledad» fue escrita por Gabriel García Márquez y publicada en 1967 en "
        "Buenos Aires. Narra la historia de la familia Buendía en el pueblo ficticio de Macondo.",
    ),
]

# several windows of Chinese at a short max_seq_len: the long-context case in a language without spaces
LONG_CJK_CONTEXT = "".join(c for _, c in PAIRS[:2]) * 3
LONG_PAIRS: list[tuple[str, str]] = [(PAIRS[0][0], LONG_CJK_CONTEXT), (PAIRS[1][0], LONG_CJK_CONTEXT)]
