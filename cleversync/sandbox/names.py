"""Word pools the sandbox's generator draws realistic names, places and titles from."""

from __future__ import annotations

# fmt: off
# Names from many traditions on purpose: non-ASCII letters, apostrophes and hyphens are what
# real rosters hold and what naive encoders and column sizes get wrong.
FIRST_NAMES: tuple[str, ...] = (
    "Aaliyah", "Aarav", "Abigail", "Adrián", "Ahmed", "Aiko", "Alejandro", "Amara", "Amelia",
    "Ana", "Anaïs", "Andrés", "Aria", "Arjun", "Ava", "Beatriz", "Benjamin", "Björn", "Brianna",
    "Camila", "Carlos", "Charlotte", "Chidi", "Chloé", "Connor", "Dae-jung", "Daniel",
    "DeShawn", "Diego", "Dmitri", "Elena", "Elijah", "Émile", "Emma", "Ethan", "Fatima",
    "Fernando", "François", "Gabriel", "Grace", "Hana", "Hannah", "Héctor", "Ibrahim", "Ingrid",
    "Isabella", "Itzel", "Jamal", "Jayden", "Jiayi", "João", "José", "Julián", "Kai", "Keanu",
    "Kenji", "Layla", "Leilani", "Liam", "Lucía", "Łukasz", "Maya", "Mía", "Mohammed", "Nadia",
    "Naomi", "Ngozi", "Noah", "Noémie", "Oliver", "Olúwaseun", "Omar", "Priya", "Rafael",
    "Renée", "Rohan", "Ruth", "Samuel", "Santiago", "Sebastián", "Siobhán", "Sofía", "Søren",
    "Sven", "Tanvir", "Thanh", "Valentina", "Wei", "William", "Ximena", "Yara", "Yuki",
    "Zainab", "Zoë", "Zoltán",
)

LAST_NAMES: tuple[str, ...] = (
    "Abara", "Adeyemi", "Alvarez", "Andersen", "Bălan", "Becker", "Bergström", "Brown",
    "Castillo", "Chen", "Clarke", "Cruz", "D'Angelo", "D'Souza", "Dubois", "Dvořák", "Eriksen",
    "Fernández", "Fitzgerald", "García", "Gómez", "Goldberg", "Gonzalez", "Haddad", "Hernández",
    "Ibáñez", "Jackson", "Jensen", "Johnson", "Kaur", "Kim", "Kowalski", "Le", "Lefèvre",
    "López", "MacDonald", "Martínez", "McAllister", "Mendoza", "Miller", "Morales", "Müller",
    "Nakamura", "Nguyen", "Nguyễn", "Novák", "O'Brien", "O'Connor", "O'Neill", "Okafor",
    "Olsen", "Ortiz", "Patel", "Pérez", "Petrović", "Phạm", "Quinn", "Ramírez", "Reyes",
    "Robinson", "Rodríguez", "Rossi", "Sánchez", "Schäfer", "Schmidt", "Singh", "Smith",
    "Smith-Jones", "Søndergaard", "Suárez", "Takahashi", "Taylor", "Thompson", "Trần",
    "Van der Berg", "Vásquez", "Walker", "Washington", "Williams", "Wiśniewski", "Yamamoto",
    "Young", "Zhang", "Zieliński",
)

MIDDLE_INITIALS = "ABCDEFGHIJKLMNOPRSTVW"

SCHOOL_STEMS: tuple[str, ...] = (
    "Pineapple", "Lincoln", "Riverside", "Maple Grove", "César Chávez", "Sojourner Truth",
    "O'Keeffe", "Cedar Ridge", "Harbor View", "Jefferson", "Willow Creek", "Sunset Park",
    "Roberto Clemente", "Lakeside", "Oak Hollow", "Hillcrest", "Eastbrook", "Pioneer",
    "Sequoia", "Frederick Douglass", "Mountain View", "Bayside", "Golden Gate", "Evergreen",
)

DISTRICT_STEMS: tuple[str, ...] = (
    "Cedar Valley", "Port Alder", "North Fork", "Santa Rosalía", "Brookhaven", "Granite Falls",
    "Lake Emerald", "Redwood Coast", "Prairie View", "Silver Springs",
)

CITIES: tuple[tuple[str, str, str], ...] = (
    ("Brooklyn", "NY", "112"), ("Oakland", "CA", "946"), ("Austin", "TX", "787"),
    ("Chicago", "IL", "606"), ("Tacoma", "WA", "984"), ("Tucson", "AZ", "857"),
    ("Dayton", "OH", "454"), ("Boise", "ID", "837"), ("Raleigh", "NC", "276"),
)

STREETS: tuple[str, ...] = (
    "Pineapple Street", "Main Street", "Elm Avenue", "Market Street", "Park Road",
    "Jefferson Boulevard", "Lakeview Drive", "Ocean Avenue", "Hill Street",
)

RACES: tuple[str, ...] = (
    "Caucasian", "Asian", "Black or African American", "American Indian",
    "Hawaiian or Other Pacific Islander", "Two or More Races", "Unknown", "",
)

# (Clever's normalized subject, course-name stem) pairs.
SUBJECTS: tuple[tuple[str, str], ...] = (
    ("english/language arts", "English"), ("math", "Math"), ("science", "Science"),
    ("social studies", "Social Studies"), ("language", "Spanish"),
    ("homeroom/advisory", "Homeroom"), ("arts and music", "Art"), ("PE and health", "PE"),
    ("technology and engineering", "Computer Science"), ("other", "Study Skills"),
    ("", "Seminar"),
)

# Clever's grade enum (v3.0) in school order; the empty string is also a legal value.
GRADE_ORDER: tuple[str, ...] = (
    "InfantToddler", "Preschool", "PreKindergarten", "TransitionalKindergarten", "Kindergarten",
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "PostGraduate",
)
GRADE_VALUES: tuple[str, ...] = (*GRADE_ORDER, "Ungraded", "Other", "")

# (kind, low grade, high grade, regular grades, rare extra grades)
SCHOOL_KINDS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Elementary School", "TransitionalKindergarten", "5",
     ("Kindergarten", "1", "2", "3", "4", "5",),
     ("TransitionalKindergarten", "PreKindergarten", "Preschool", "InfantToddler", "Ungraded",)),
    ("Middle School", "6", "8",
     ("6", "7", "8",),
     ("Ungraded", "Other", "",)),
    ("High School", "9", "12",
     ("9", "10", "11", "12",),
     ("13", "PostGraduate", "Ungraded", "",)),
)

GRADE_WORDS: dict[str, str] = {
    "Kindergarten": "Kindergarten", "1": "First Grade", "2": "Second Grade", "3": "Third Grade",
    "4": "Fourth Grade", "5": "Fifth Grade", "6": "Sixth Grade", "7": "Seventh Grade",
    "8": "Eighth Grade",
}

TEACHER_TITLES_BY_KIND: dict[str, tuple[str, ...]] = {
    "Elementary School": (
        "Kindergarten Teacher", "Grade 1 Teacher", "Grade 2 Teacher", "Grade 3 Teacher",
        "Grade 4 Teacher", "Grade 5 Teacher", "Music Teacher", "Reading Specialist",
    ),
    "Middle School": (
        "Grade 6 Math Teacher", "Grade 7 Science Teacher", "Grade 8 English Teacher",
        "Social Studies Teacher", "Band Director", "Special Education Teacher",
    ),
    "High School": (
        "Grade 9 English Teacher", "High School Arts Teacher", "Algebra Teacher",
        "Biology Teacher", "AP History Teacher", "Spanish Teacher",
        "Physical Education Teacher",
    ),
}
# fmt: on
