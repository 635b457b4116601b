"""The suite's own vocabulary: concrete nouns for objects and upper-case letters for box labels.

Every noun was chosen to be a single token with its leading space in the common tokenizer families
(GPT-2 style BPE, Llama SentencePiece, Gemma, Qwen); `tokenization.check_vocabulary` still checks each
word against the tokenizer in use and records what it removes.
"""

import string
from dataclasses import dataclass

OBJECTS: tuple[str, ...] = (
    "apple",
    "bag",
    "ball",
    "bell",
    "bike",
    "bill",
    "boat",
    "bone",
    "book",
    "boot",
    "bottle",
    "bowl",
    "box",
    "bread",
    "brick",
    "brush",
    "cake",
    "camera",
    "car",
    "card",
    "chair",
    "clock",
    "coat",
    "coin",
    "computer",
    "cookie",
    "crown",
    "cup",
    "desk",
    "dish",
    "document",
    "doll",
    "door",
    "dress",
    "drum",
    "egg",
    "engine",
    "fan",
    "file",
    "fish",
    "flag",
    "flower",
    "fork",
    "frame",
    "gift",
    "glass",
    "glove",
    "hat",
    "horse",
    "jacket",
    "key",
    "kite",
    "knife",
    "lamp",
    "leaf",
    "letter",
    "map",
    "milk",
    "mirror",
    "money",
    "moon",
    "nail",
    "necklace",
    "newspaper",
    "note",
    "paper",
    "pen",
    "pencil",
    "phone",
    "piano",
    "picture",
    "pillow",
    "pipe",
    "plane",
    "plant",
    "plate",
    "radio",
    "ring",
    "rock",
    "rope",
    "sheet",
    "shirt",
    "shoe",
    "sock",
    "spoon",
    "stamp",
    "star",
    "stone",
    "suit",
    "table",
    "tea",
    "ticket",
    "tie",
    "toy",
    "train",
    "tree",
    "truck",
    "watch",
    "wheel",
    "wire",
)

LABELS: tuple[str, ...] = tuple(string.ascii_uppercase)


@dataclass(frozen=True)
class Vocabulary:
    """The words kept for one tokenizer (every split is generated from them), and those removed because
    they are not single tokens in their prompt context (`tokenization.check_vocabulary`)."""

    objects: tuple[str, ...]
    labels: tuple[str, ...]
    removed_objects: tuple[str, ...]
    removed_labels: tuple[str, ...]
