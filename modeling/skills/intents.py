"""The conversational layer: greetings, thanks, who-are-you, out-of-scope requests, complaints.

Intents (``Parse.task`` values beside the seven tasks), each with one canonical reply that says
what the model can help with and gives one example question, never a made-up answer:

    greeting      "Hi!", "Good morning, how are you?"
    thanks        "Thanks!", "Great, thank you."
    farewell      "Bye!", "See you later."
    identity      "Who are you?", "What can you do?"
    out_of_scope  code, weather, jokes, news, and facts the world does not hold ("Who is the
                  president of France?"): recognised by a lexicon of such topics (``OOS_WORDS``)

A complaint ("That is not right.") after an answer is a *repair* turn: it asks the previous
question again, so its parse is that question with ``repair=True`` and its answer is the right
answer (the same one restated when the first reply was right).

Templates: the last ``N_OOD_TEMPLATES`` of every list are held out for the ood split, as for the
tasks. ``*_TEMPLATES`` hold ``{country}``, ``{city}``, ``{day}``, ``{thing}`` and ``{code}`` slots
that corpus.py fills.
"""

from __future__ import annotations

INTENTS = ("greeting", "thanks", "farewell", "identity", "out_of_scope")
SOCIAL_INTENTS = ("greeting", "thanks", "farewell", "identity")

CAPABILITIES = (
    "I can do sums, name capital cities, tell which day or month comes before or after "
    "another, spell words forwards and backwards, and convert units."
)
# one example question per reply, always one the model answers well
REPLIES: dict[str, str] = {
    "greeting": f"Hello! {CAPABILITIES} For example, ask me: What is the capital of France?",
    "identity": (
        f"I am a small chat model trained on a skills world. {CAPABILITIES} For example, ask "
        "me: What is 7 plus 5?"
    ),
    "thanks": "You are welcome! Ask me another one, for example: What day comes after Monday?",
    "farewell": "Goodbye! Come back any time, for example to ask: Spell the word apple.",
    "out_of_scope": (
        f"Sorry, I cannot help with that. {CAPABILITIES} For example, ask me: What month comes "
        "after March?"
    ),
}

# the answer to a sum outside the world's ranges (modeling.skills.world.arithmetic_in_range):
# the scope, honestly, never a guessed number. It opens unlike the out-of-scope reply ("Sorry, I
# cannot help with that."): with a shared opening the model answered held-out out-of-scope
# requests with this one (0% on those OOD dialogues, measured)
RANGE_REPLY = (
    "Those numbers are beyond my arithmetic: I add, subtract and multiply whole numbers from 0 to "
    "12, never below zero. For example, ask me: What is 9 plus 7?"
)

GREETING_TEMPLATES = [
    "Hi!", "Hello!", "Hey there!", "Good morning!", "Hi, how are you?", "Hello there.",
    "Hey, what's up?", "Good evening!", "Howdy!", "Greetings!", "hi", "hello", "hey", "Hey!",
    "Hi there!", "hello there", "Morning!", "Hi :)", "Hey, how are you doing?", "Hello, friend!",
    # held out
    "Hiya, anybody there?", "Good afternoon to you!",
]  # fmt: skip
THANKS_TEMPLATES = [
    "Thanks!", "Thank you.", "Thanks a lot!", "Thank you very much.", "Great, thanks.",
    "Cheers!", "Perfect, thank you!", "Thanks for the help.", "Nice, thanks!", "Ok, thank you.",
    # held out
    "Much appreciated.", "Many thanks!",
]  # fmt: skip
FAREWELL_TEMPLATES = [
    "Bye!", "Goodbye.", "See you later!", "Bye bye.", "Goodbye, have a nice day.",
    "I have to go now, bye.", "Ok, bye!", "See you soon.", "Good night!", "Talk to you later.",
    # held out
    "Farewell!", "Catch you later, bye.",
]  # fmt: skip
IDENTITY_TEMPLATES = [
    "Who are you?", "What are you?", "What can you do?", "What can you help me with?",
    "Tell me about yourself.", "What is your name?", "Are you a bot?", "How can you help me?",
    "What kind of questions can you answer?", "What do you know?",
    # held out
    "Introduce yourself, please.", "What are you able to do?",
]  # fmt: skip
OOS_TEMPLATES = [
    "Write a python function that {code}.",
    "Can you write code that {code}?",
    "How do I write a program that {code}?",
    "What is the weather like in {city} today?",
    "Will it be sunny in {city} on {day}?",
    "What's the weather forecast for {day}?",
    "Tell me a joke.",
    "Tell me a funny joke about a {thing}.",
    "What is the latest news?",
    "What happened in the news today?",
    "Who is the president of {country}?",
    "What is the population of {country}?",
    "What language do people speak in {country}?",
    "What currency does {country} use?",
    "How tall is the highest mountain in {country}?",
    "Write a poem about a {thing}.",
    "Can you sing me a song?",
    "Recommend a good movie.",
    "What should I cook for dinner?",
    "What is the meaning of life?",
    "Who won the football game?",
    "Book a table at a restaurant in {city}.",
    "What is the price of bitcoin?",
    "Explain how a computer works.",
    "Tell me a story about a {thing}.",
    "How old is the universe?",
    # requests about a topic the world does not hold ({topic}: OOS_TOPICS)
    "Can you tell me about {topic}?",
    "Tell me about {topic}.",
    "Explain {topic} to me.",
    "What do you know about {topic}?",
    "I need help with {topic}.",
    "Can you help me with {topic}?",
    "What do you think about {topic}?",
    "Give me some advice on {topic}.",
    "How does {topic} work?",
    "Teach me about {topic}.",
    "I have a question about {topic}.",
    "Do you know anything about {topic}?",
    "What is the weather in {city}?",
    "Who won the game in {city} yesterday?",
    "What are the best restaurants in {city}?",
    # held out
    "Could you summarise the headlines from {city}?",
    "Write an essay about the history of {country}.",
]
COMPLAINT_TEMPLATES = [
    "That is not right.", "That's wrong.", "No, that is incorrect.", "Wrong answer.",
    "That is not correct, try again.", "Are you sure? I think that is wrong.",
    "Nope, that's not it.", "Incorrect.", "I don't think that's right.", "That's a mistake.",
    "No, that's wrong.", "That answer is wrong.", "That is incorrect, please check.",
    "You got it wrong.", "Wrong!", "That doesn't seem right.", "This is not correct.",
    "Are you sure? That is not right.", "Hmm, I think that's a mistake.", "No, that isn't right.",
    "I think you are wrong.", "Incorrect answer, try again.", "That's not correct at all.",
    "Wrong, check again.", "That can't be right.", "There is an error in your answer.",
    # held out
    "Hmm, that doesn't look right to me.", "You made an error there.",
]  # fmt: skip
INTENT_TEMPLATES: dict[str, list[str]] = {
    "greeting": GREETING_TEMPLATES,
    "thanks": THANKS_TEMPLATES,
    "farewell": FAREWELL_TEMPLATES,
    "identity": IDENTITY_TEMPLATES,
    "out_of_scope": OOS_TEMPLATES,
    "complaint": COMPLAINT_TEMPLATES,
}

# slot fillers of the out-of-scope templates (none is a skills keyword, so no skills parse)
OOS_CODE = [
    "adds two numbers", "sorts a list", "prints hello", "counts words in a file",
    "reads a csv file", "checks for prime numbers", "finds the largest number", "makes a website",
]  # fmt: skip
OOS_CITIES = [
    "Paris", "London", "Tokyo", "New York", "Madrid", "Berlin", "Cairo", "Sydney", "Rome", "Lima",
    "Chicago", "Toronto", "Mumbai", "Lagos", "Seoul", "Dubai",
]  # fmt: skip
OOS_THINGS = ["cat", "dog", "robot", "tree", "horse", "pizza", "ship", "duck"]
# topics outside the world, each with the word of OOS_WORDS that marks it; the last
# N_OOD_TOPICS are held out (only the ood split asks about them)
OOS_TOPICS: list[tuple[str, str]] = [
    ("quantum physics", "physics"), ("the stock market", "market"), ("my homework", "homework"),
    ("climate change", "climate"), ("black holes", "holes"), ("photosynthesis", "photosynthesis"),
    ("machine learning", "machine"), ("my taxes", "taxes"), ("gardening", "gardening"),
    ("dinosaurs", "dinosaurs"), ("the human brain", "brain"), ("vaccines", "vaccines"),
    ("electric cars", "electric"), ("the olympics", "olympics"), ("volcanoes", "volcanoes"),
    ("chess", "chess"), ("meditation", "meditation"), ("investing money", "investing"),
    ("guitar lessons", "guitar"), ("renting an apartment", "apartment"),
    ("job interviews", "interviews"), ("healthy eating", "healthy"), ("sleep problems", "sleep"),
    ("the roman empire", "empire"), ("space travel", "space"), ("artificial intelligence",
    "intelligence"), ("the internet", "internet"), ("social media", "media"),
    ("basketball", "basketball"), ("knitting", "knitting"), ("car insurance", "insurance"),
    ("learning spanish", "spanish"), ("the solar system", "solar"), ("yoga", "yoga"),
    ("photography", "photography"), ("coffee", "coffee"), ("elections", "elections"),
    ("earthquakes", "earthquakes"), ("dreams", "dreams"), ("cryptocurrency", "cryptocurrency"),
    ("the pyramids", "pyramids"), ("nutrition", "nutrition"), ("global warming", "warming"),
    ("recycling", "recycling"), ("algebra", "algebra"), ("chemistry", "chemistry"),
    ("philosophy", "philosophy"), ("psychology", "psychology"), ("economics", "economics"),
    ("astronomy", "astronomy"), ("electricity", "electricity"), ("my phone battery", "battery"),
    # held out
    ("opera singing", "opera"), ("poker", "poker"), ("submarines", "submarines"),
    ("glaciers", "glaciers"), ("origami", "origami"), ("tattoos", "tattoos"),
]  # fmt: skip
N_OOD_TOPICS = 6

# Words that mark a request outside the world (the oracle's lexicon, not the model's: the model
# learns the behaviour from the templates above and is tested on held-out phrasings). None of them
# is an entity or a keyword of the tasks.
OOS_WORDS = frozenset(
    """python function code program programming javascript script website software computer
    weather sunny forecast temperature joke jokes funny news headlines president population
    language languages currency mountain highest poem song sing movie movies film cook dinner
    recipe meaning life football game restaurant price bitcoin explain story universe
    summarise summarize essay history stock politics won restaurants""".split()  # noqa: SIM905
) | frozenset(word for _, word in OOS_TOPICS)
# words of the social intents and of complaints, known to the parser so that typos in them resolve
SOCIAL_WORDS = frozenset(
    """hi hello hey hiya howdy greetings morning evening afternoon thanks thank thx cheers
    appreciated appreciate bye goodbye farewell later night soon yourself name bot able wrong
    incorrect mistake mistaken nope error correct sure""".split()  # noqa: SIM905 (a word list)
)
_GREETING = frozenset(
    ["hi", "hello", "hey", "hiya", "howdy", "greetings", "morning", "evening", "afternoon"]
)
_THANKS = frozenset(["thanks", "thank", "thx", "cheers", "appreciated", "appreciate"])
_COMPLAINT = frozenset(["wrong", "incorrect", "mistake", "mistaken", "nope", "error"])
_NEGATION = frozenset(["not", "don't", "doesn't", "isn't", "can't"])


def social_intent(words: list[str]) -> str | None:
    """The social intent of one sentence, or None.

    Args:
        words: the sentence's lowercase words (typos already resolved to the word they stand for).
    Returns:
        "identity", "farewell", "thanks" or "greeting" (that priority: "Hello! Who are you?" asks
        who the model is), or None.
    """
    ws = set(words)
    if ws & {"you", "your", "yourself"} and ws & {
        "who", "what", "help", "name", "bot", "able", "know", "answer", "yourself"
    }:  # fmt: skip
        return "identity"
    see_later = "later" in ws and ws & {"see", "talk", "catch"}
    if ws & {"bye", "goodbye", "farewell"} or see_later or {"good", "night"} <= ws:
        return "farewell"
    if {"see", "soon"} <= ws:
        return "farewell"
    if ws & _THANKS:
        return "thanks"
    if ws & _GREETING or {"how", "are", "you"} <= ws or {"what's", "up"} <= ws:
        return "greeting"
    return None


def is_complaint(words: list[str]) -> bool:
    """Whether one sentence disputes the previous reply ("That is not right.", "Wrong answer.").

    Args:
        words: the sentence's lowercase words (typos already resolved).
    Returns:
        True for a complaint.
    """
    ws = set(words)
    if ws & _COMPLAINT or ws & _NEGATION and ws & {"right", "correct"}:
        return True
    return words in (["no"], ["are", "you", "sure"])
