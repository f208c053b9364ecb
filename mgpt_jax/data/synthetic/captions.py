"""Paraphrased captions of action sequences, as HumanML3D text lines.

A small grammar: each action has verb-phrase templates that always name its
key parameters (direction, side, count; speed when it is not normal); a
sentence joins a subject and the phrases with a connective. Templates are
plain words; `word|POS` overrides the lexicon's tag where a word is ambiguous
("to the left|NOUN" vs "a left|ADJ turn"). The lexicon gives each surface word
its lemma and Universal POS tag, which is what the released token field holds
(lower-case lemmas, punctuation dropped).
"""
from __future__ import annotations

import numpy as np

from mgpt_jax.data.formats import Caption

# ---------------------------------------------------------------------------- lexicon

# lemma: (3rd person singular, gerund)
_VERBS = {
    "walk": ("walks", "walking"), "run": ("runs", "running"), "jog": ("jogs", "jogging"),
    "sprint": ("sprints", "sprinting"), "jump": ("jumps", "jumping"), "hop": ("hops", "hopping"),
    "turn": ("turns", "turning"), "rotate": ("rotates", "rotating"), "spin": ("spins", "spinning"),
    "twirl": ("twirls", "twirling"), "wave": ("waves", "waving"), "kick": ("kicks", "kicking"),
    "squat": ("squats", "squatting"), "crouch": ("crouches", "crouching"),
    "sit": ("sits", "sitting"), "stand": ("stands", "standing"), "get": ("gets", "getting"),
    "raise": ("raises", "raising"), "lift": ("lifts", "lifting"),
    "stretch": ("stretches", "stretching"), "step": ("steps", "stepping"),
    "take": ("takes", "taking"), "make": ("makes", "making"), "do": ("does", "doing"),
    "bend": ("bends", "bending"), "sidestep": ("sidesteps", "sidestepping"),
}
_GERUND = {third: gerund for third, gerund in _VERBS.values()}

_WORDS = {
    "DET": "a an the his her their its both all that",
    "NOUN": ("person man woman figure human step time place spot hand leg foot arm head knee "
             "shoulder side body front degree pace way turn jump kick squat spin seat angle"),
    "PRON": "someone",
    "ADV": ("forward backward ahead straight sideways leftward rightward diagonally then first "
            "finally once twice up back out around slowly quickly briskly leisurely fast again"),
    "ADJ": "left right slow quick half full single quarter",
    "ADP": "to for in into on of over above with before after at down",
    "CCONJ": "and",
    "NUM": "one two three four five six seven eight nine ten",
}
_LEMMAS = {"forwards": "forward", "backwards": "backward", "steps": "step", "times": "time",
           "arms": "arm", "knees": "knee", "degrees": "degree", "sides": "side", "jumps": "jump",
           "kicks": "kick", "squats": "squat", "turns": "turn"}

LEXICON: dict[str, tuple[str, str]] = {}
for _pos, _words in _WORDS.items():
  LEXICON.update({w: (w, _pos) for w in _words.split()})
for _surface, _lemma in _LEMMAS.items():
  LEXICON[_surface] = (_lemma, LEXICON[_lemma][1])
for _lemma, (_third, _gerund) in _VERBS.items():
  LEXICON[_third] = (_lemma, "VERB")
  LEXICON[_gerund] = (_lemma, "VERB")
LEXICON["running"] = ("run", "VERB")
LEXICON["steps"] = ("step", "NOUN")  # "takes two steps" is the common use; the verb is tagged


def _parts(word: str) -> tuple[str, str, str]:
  """'left|NOUN,' -> ('left', 'NOUN', ',')."""
  core = word.rstrip(".,")
  surface, _, pos = core.partition("|")
  return surface, pos, word[len(core):]


def _split(phrase: str) -> list[tuple[str, str | None]]:
  """Words of a template (punctuation kept) with their POS overrides."""
  out = []
  for word in phrase.split():
    surface, pos, punct = _parts(word)
    out.append((surface + punct, pos or None))
  return out


def tokens_of(phrase: str) -> tuple[str, ...]:
  """The `lemma/POS` token field of an annotated phrase."""
  tokens = []
  for surface, pos in _split(phrase):
    word = surface.strip(".,").lower()
    if not word:
      continue
    if word.isdigit():
      lemma, tag = word, "NUM"
    elif word in LEXICON:
      lemma, tag = LEXICON[word]
    else:
      raise KeyError(f"caption word {word!r} is not in the synthetic lexicon")
    tokens.append(f"{lemma}/{pos or tag}")
  return tuple(tokens)


def text_of(phrase: str) -> str:
  return " ".join(surface for surface, _ in _split(phrase))


def gerund(phrase: str) -> str:
  """'sits down and stands up' -> 'sitting down and standing up'; nouns ('two steps') stay."""
  out = []
  for word in phrase.split():
    surface, pos, punct = _parts(word)
    if surface in _GERUND and (pos or LEXICON[surface][1]) == "VERB":
      surface = _GERUND[surface]
    out.append(surface + ("|" + pos if pos else "") + punct)
  return " ".join(out)


# ---------------------------------------------------------------------------- phrases

_NUMBER = dict(enumerate("zero one two three four five six seven eight nine ten".split()))
SUBJECTS = (("a person", "their"), ("someone", "their"), ("a man", "his"), ("the man", "his"),
            ("a woman", "her"), ("the person", "their"), ("the figure", "its"),
            ("a human", "their"), ("the woman", "her"))
_SLOW = ("slowly", "at a slow pace", "leisurely")
_FAST = ("quickly", "fast|ADV", "at a fast|ADJ pace", "briskly")
_WALK_DIRS = {
    "forward": ("forward", "forwards", "straight ahead", "ahead"),
    "backward": ("backward", "backwards", "back|ADV"),
    "left": ("to the left|NOUN", "to {P} left|NOUN", "sideways to the left|NOUN", "leftward"),
    "right": ("to the right|NOUN", "to {P} right|NOUN", "sideways to the right|NOUN", "rightward"),
    "forward_left": ("diagonally forward and to the left|NOUN", "forward and to the left|NOUN",
                     "forward at an angle to the left|NOUN"),
    "forward_right": ("diagonally forward and to the right|NOUN", "forward and to the right|NOUN",
                      "forward at an angle to the right|NOUN"),
}
_JUMP_DIRS = dict(_WALK_DIRS, up=("in place", "up and down", "straight up", "on the spot"),
                  backward=("backward", "backwards"))


def _times(count: int, rng) -> str:
  """'twice', 'three times'...; a single repetition may go unsaid ('jumps forward')."""
  return _pick(rng, {1: ("once", ""), 2: ("twice", "two times"), 3: ("three times",),
                     4: ("four times",)}[count])


def _pick(rng, options) -> str:
  return str(options[int(rng.integers(len(options)))])


def _speed(speed: str, rng) -> str:
  return {"slow": _pick(rng, _SLOW), "fast": _pick(rng, _FAST)}.get(speed, "")


def _walk(p, rng):
  n, direction = _NUMBER[p["count"]], _pick(rng, _WALK_DIRS[p["direction"]])
  adverb = _speed(p["speed"], rng)
  adjective = {"slow": "slow", "fast": _pick(rng, ("quick", "fast|ADJ"))}.get(p["speed"], "")
  options = [f"walks {adverb} {direction} for {n} steps",
             f"takes {n} {adjective} steps {direction}", f"walks {n} steps {direction} {adverb}",
             f"walks {direction} {adverb} taking {n} steps"]
  if p["direction"] in ("left", "right"):
    options.append(f"sidesteps {n} times to the {p['direction']}|NOUN {adverb}")
  return _pick(rng, options), True


def _run(p, rng):
  n = _NUMBER[p["count"]]
  direction = _pick(rng, {**_WALK_DIRS, "forward_left": ("forward and to the left|NOUN",
                                                         "diagonally to the left|NOUN"),
                          "forward_right": ("forward and to the right|NOUN",
                                            "diagonally to the right|NOUN")}[p["direction"]])
  verb = _pick(rng, {"slow": ("jogs", "runs slowly", "jogs slowly"),
                     "fast": ("sprints", "runs fast|ADV", "runs quickly"),
                     "normal": ("runs",)}[p["speed"]])
  options = [f"{verb} {direction} for {n} steps", f"{verb} {n} steps {direction}",
             f"takes {n} running steps {direction} {_speed(p['speed'], rng)}"]
  return _pick(rng, options), True


def _jump(p, rng):
  direction, times = _pick(rng, _JUMP_DIRS[p["direction"]]), _times(p["count"], rng)
  some = "a single jump|NOUN" if p["count"] == 1 else f"{_NUMBER[p['count']]} jumps|NOUN"
  options = [f"jumps {direction} {times}", f"hops {direction} {times}", f"does {some} {direction}",
             f"jumps {times} {direction}"]
  return _pick(rng, options), False


def _turn(p, rng):
  side = p["side"]
  if p["angle"] == 90:
    options = [f"turns {side}|ADV", f"turns to the {side}|NOUN", f"turns to {{P}} {side}|NOUN",
               f"makes a {side}|ADJ turn", f"turns 90 degrees to the {side}|NOUN",
               f"does a quarter turn to the {side}|NOUN", f"rotates 90 degrees to the {side}|NOUN"]
  else:
    options = [f"turns around to the {side}|NOUN", f"turns 180 degrees to the {side}|NOUN",
               f"does a half turn to the {side}|NOUN",
               f"turns around over {{P}} {side}|ADJ shoulder",
               f"turns all the way around to the {side}|NOUN"]
  return _pick(rng, options), False


def _spin(p, rng):
  side, times = p["side"], _times(p["count"], rng)
  options = [f"spins around to the {side}|NOUN {times}", f"spins {times} to the {side}|NOUN",
             f"twirls to the {side}|NOUN {times}"]
  if p["count"] == 1:
    options += [f"does a full spin|NOUN to the {side}|NOUN", f"does a full turn to the {side}|NOUN"]
  else:
    options += [f"does {_NUMBER[p['count']]} full turns|NOUN to the {side}|NOUN"]
  return _pick(rng, options), False


def _wave(p, rng):
  side, times = p["side"], _times(p["count"], rng)
  options = [f"waves {{P}} {side}|ADJ hand {times}", f"waves with {{P}} {side}|ADJ hand {times}",
             f"waves {times} with the {side}|ADJ hand",
             f"raises {{P}} {side}|ADJ hand and waves {times}"]
  return _pick(rng, options), False


def _kick(p, rng):
  side, times = p["side"], _times(p["count"], rng)
  some = "a kick|NOUN" if p["count"] == 1 else f"{_NUMBER[p['count']]} kicks|NOUN"
  options = [f"kicks with {{P}} {side}|ADJ leg {times}",
             f"kicks {{P}} {side}|ADJ foot forward {times}",
             f"kicks forward with the {side}|ADJ leg {times}",
             f"does {some} with {{P}} {side}|ADJ leg",
             f"kicks {times} with {{P}} {side}|ADJ foot"]
  return _pick(rng, options), False


def _squat(p, rng):
  times = _times(p["count"], rng)
  some = "a squat|NOUN" if p["count"] == 1 else f"{_NUMBER[p['count']]} squats|NOUN"
  options = [f"squats down {times}", f"squats {times}", f"does {some}",
             f"crouches down into a squat|NOUN {times}", f"bends {{P}} knees and squats {times}"]
  return _pick(rng, options), False


def _sit_down(p, rng):
  if p["stand_up"]:
    options = ["sits down and stands back up", "sits down and then gets back up",
               "takes a seat and stands up again", "sits down before standing back up"]
  else:
    options = ["sits down", "takes a seat", "bends {P} knees and sits down", "sits down on a seat"]
  return _pick(rng, options), False


def _raise_arms(p, rng):
  arms = {"both": ("both arms", "{P} arms", "both of {P} arms"),
          "left": ("{P} left|ADJ arm", "the left|ADJ arm"),
          "right": ("{P} right|ADJ arm", "the right|ADJ arm")}[p["arms"]]
  style = {"up": ("above {P} head", "over {P} head", "up over {P} head"),
           "side": ("out to the sides", "sideways") if p["arms"] == "both" else
                   ("out to the side", "sideways"),
           "forward": ("forward", "in front of {P} body", "straight out in front|NOUN")}[p["style"]]
  times = _times(p["count"], rng)
  verb = _pick(rng, ("raises", "lifts", "stretches"))
  return f"{verb} {_pick(rng, arms)} {_pick(rng, style)} {times}", False


def _step_back(p, rng):
  n = p["count"]
  if n == 1:
    options = ["takes a step back|ADV", "steps|VERB back|ADV", "steps|VERB backward",
               "takes one step backward"]
  else:
    options = [f"takes {_NUMBER[n]} steps back|ADV", f"takes {_NUMBER[n]} steps backward",
               f"steps|VERB back|ADV {_times(n, rng)}", f"steps|VERB backward {_times(n, rng)}"]
  return _pick(rng, options), False


_PHRASES = {"walk": _walk, "run": _run, "jump": _jump, "turn": _turn, "spin": _spin, "wave": _wave,
            "kick": _kick, "squat": _squat, "sit_down": _sit_down, "raise_arms": _raise_arms,
            "step_back": _step_back}


def verb_phrase(name: str, params: dict, rng: np.random.Generator) -> str:
  """A 3rd-person verb phrase for one action, naming all of its key parameters."""
  phrase, has_speed = _PHRASES[name](params, rng)
  if not has_speed and params.get("speed", "normal") != "normal":
    phrase = f"{phrase} {_speed(params['speed'], rng)}"
  return " ".join(phrase.split())


# ---------------------------------------------------------------------------- sentences

_SEQUENCES = {
    1: ("{S} {A}",),
    2: ("{S} {A}, then {B}", "{S} {A} and then {B}", "{S} {A} before {b}",
        "{S} first {A}, then {B}",
        "{S} {A}, and after that {B}", "after {a}, {S} {B}", "{S} {A} and {B}"),
    3: ("{S} {A}, then {B}, and then {C}", "{S} {A}, {B} and finally {C}",
        "{S} first {A}, then {B} before {c}", "after {a}, {S} {B} and then {C}",
        "{S} {A}, after that {B}, then {C}"),
}


def sentence(actions, rng: np.random.Generator) -> str:
  """One annotated sentence for a sequence of (name, params)."""
  subject, possessive = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
  slots = {"S": subject}
  for key, (name, params) in zip("ABC", actions):
    phrase = verb_phrase(name, params, rng)
    slots[key], slots[key.lower()] = phrase, gerund(phrase)
  text = _pick(rng, _SEQUENCES[len(actions)]).format(**slots).replace("{P}", possessive)
  return text + ("." if rng.random() < 0.5 else "")


def caption(phrase: str, start: float = 0.0, end: float = 0.0) -> Caption:
  return Caption(text_of(phrase), tokens_of(phrase), start, end)


def describe(actions, rng: np.random.Generator, count: int) -> list[Caption]:
  """`count` distinct whole-clip captions (fewer only if the grammar runs out)."""
  seen, out = set(), []
  for _ in range(20 * count):
    phrase = sentence(actions, rng)
    text = text_of(phrase)
    if text not in seen:
      seen.add(text)
      out.append(caption(phrase))
      if len(out) == count:
        break
  return out
