"""Generate ``arithmetic.tasks.jsonl``: grade-school arithmetic word problems.

Deterministic (seeded) and self-checking: every reference is computed here, so it is
correct by construction. All quantities and answers are non-negative integers.

    python sample_rubrics/make_arithmetic_tasks.py            # writes next to this file
    python sample_rubrics/make_arithmetic_tasks.py --out x.jsonl --seed 7

The first 64 tasks are ``split: train`` and the last 40 ``split: eval``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20260601
N_TRAIN = 64
N_EVAL = 40

NAMES = [
    "Ann", "Ben", "Carla", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas",
    "Kemal", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara",
    "Uma", "Victor", "Wen", "Yusuf", "Zoe",
]
# (singular, plural); counts are always >= 2, so the plural is used with numbers
OBJECTS = [
    ("pencil", "pencils"), ("marble", "marbles"), ("sticker", "stickers"),
    ("apple", "apples"), ("book", "books"), ("shell", "shells"), ("stamp", "stamps"),
    ("cookie", "cookies"), ("card", "cards"), ("balloon", "balloons"),
    ("toy car", "toy cars"), ("bead", "beads"), ("seashell", "seashells"),
    ("button", "buttons"), ("crayon", "crayons"),
]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("basket", "baskets"),
              ("crate", "crates"), ("tray", "trays")]


def _two_names(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(NAMES, 2)
    return a, b


def t_add(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS)
    a, b = rng.randint(5, 90), rng.randint(3, 60)
    return f"{n} has {a} {obj}. A friend gives {n} {b} more. How many {obj} does {n} have now?", a + b


def t_add_two_people(rng):
    n1, n2 = _two_names(rng); _, obj = rng.choice(OBJECTS)
    a, b = rng.randint(10, 200), rng.randint(10, 200)
    return (f"{n1} collected {a} {obj} and {n2} collected {b} {obj}. "
            f"How many {obj} did they collect altogether?"), a + b


def t_sub(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS)
    a = rng.randint(20, 150); b = rng.randint(2, a - 1)
    return f"{n} had {a} {obj} and gave away {b}. How many {obj} does {n} have left?", a - b


def t_sub_compare(rng):
    n1, n2 = _two_names(rng); _, obj = rng.choice(OBJECTS)
    a = rng.randint(30, 300); b = rng.randint(5, a - 1)
    return f"{n1} has {a} {obj}. {n2} has {b} {obj}. How many more {obj} does {n1} have than {n2}?", a - b


def t_mul(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS); _, cont = rng.choice(CONTAINERS)
    a, b = rng.randint(3, 12), rng.randint(4, 25)
    return f"{n} has {a} {cont}. Each one holds {b} {obj}. How many {obj} does {n} have in total?", a * b


def t_mul_price(rng):
    n = rng.choice(NAMES); one, obj = rng.choice(OBJECTS)
    a, p = rng.randint(2, 15), rng.randint(2, 12)
    return f"Each {one} costs {p} dollars. {n} buys {a} {obj}. How many dollars does {n} spend?", a * p


def t_div(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS)
    k, q = rng.randint(2, 9), rng.randint(3, 20)
    total = k * q
    return (f"{n} shares {total} {obj} equally among {k} friends. "
            f"How many {obj} does each friend get?"), q


def t_div_groups(rng):
    _, obj = rng.choice(OBJECTS); _, cont = rng.choice(CONTAINERS)
    per, q = rng.randint(3, 12), rng.randint(4, 30)
    total = per * q
    return (f"A shop packs {total} {obj} into {cont} of {per}. "
            f"How many {cont} does it fill?"), q


def t_buy_change(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS)
    a, p = rng.randint(2, 8), rng.randint(2, 9)
    cost = a * p
    paid = rng.choice([x for x in (20, 50, 100) if x > cost])
    return (f"{n} buys {a} {obj} at {p} dollars each and pays with a {paid}-dollar note. "
            f"How many dollars of change does {n} get?"), paid - cost


def t_two_step_add_sub(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS)
    a, b = rng.randint(10, 80), rng.randint(5, 40)
    c = rng.randint(3, a + b - 1)
    return (f"{n} starts with {a} {obj}, buys {b} more, then loses {c}. "
            f"How many {obj} does {n} have now?"), a + b - c


def t_two_step_mul_add(rng):
    n = rng.choice(NAMES); _, obj = rng.choice(OBJECTS); _, cont = rng.choice(CONTAINERS)
    a, b, c = rng.randint(2, 9), rng.randint(3, 15), rng.randint(2, 20)
    return (f"{n} has {a} {cont} with {b} {obj} in each, plus {c} loose {obj}. "
            f"How many {obj} does {n} have in total?"), a * b + c


def t_two_step_weekly(rng):
    n = rng.choice(NAMES)
    per_day, days = rng.randint(2, 12), rng.randint(3, 7)
    earned = per_day * days
    spent = rng.randint(1, earned - 1)
    return (f"{n} saves {per_day} dollars a day for {days} days, then spends {spent} dollars on a game. "
            f"How many dollars does {n} have left?"), earned - spent


def t_two_step_div_sub(rng):
    n1, n2 = _two_names(rng); _, obj = rng.choice(OBJECTS)
    k, q = rng.randint(2, 6), rng.randint(4, 15)
    total = k * q
    eaten = rng.randint(1, q - 1)
    return (f"{n1} splits {total} {obj} equally into {k} piles and gives one pile to {n2}. "
            f"{n2} then loses {eaten} of them. How many {obj} does {n2} have left?"), q - eaten


def t_two_step_rows(rng):
    rows, seats = rng.randint(4, 15), rng.randint(5, 20)
    cap = rows * seats
    empty = rng.randint(1, cap // 2)
    return (f"A hall has {rows} rows of {seats} seats. At a concert {empty} seats are empty. "
            f"How many people are sitting?"), cap - empty


def t_pages(rng):
    n = rng.choice(NAMES)
    per_day, days = rng.randint(5, 30), rng.randint(2, 9)
    left = rng.randint(1, 60)
    total = per_day * days + left
    return (f"A book has {total} pages. {n} reads {per_day} pages a day for {days} days. "
            f"How many pages are left to read?"), left


def t_times_as_many(rng):
    n1, n2 = _two_names(rng); _, obj = rng.choice(OBJECTS)
    a, k = rng.randint(3, 20), rng.randint(2, 6)
    return (f"{n1} has {a} {obj}. {n2} has {k} times as many {obj} as {n1}. "
            f"How many {obj} do they have together?"), a + k * a


def t_bake_sell(rng):
    trays, per = rng.randint(3, 9), rng.randint(6, 24)
    made = trays * per
    sold = rng.randint(made // 3, made - 1)
    food = rng.choice(["muffins", "rolls", "cupcakes", "pretzels"])
    return (f"A baker makes {trays} trays of {per} {food} and sells {sold} of them. "
            f"How many {food} are left?"), made - sold


def t_distance(rng):
    n = rng.choice(NAMES)
    speed, hours = rng.randint(3, 15), rng.randint(2, 8)
    return (f"{n} cycles {speed} kilometres every hour for {hours} hours. "
            f"How many kilometres does {n} cycle?"), speed * hours


TEMPLATES = [
    t_add, t_add_two_people, t_sub, t_sub_compare, t_mul, t_mul_price, t_div, t_div_groups,
    t_buy_change, t_two_step_add_sub, t_two_step_mul_add, t_two_step_weekly, t_two_step_div_sub,
    t_two_step_rows, t_pages, t_times_as_many, t_bake_sell, t_distance,
]


def make_tasks(seed: int = SEED, n_train: int = N_TRAIN, n_eval: int = N_EVAL) -> list[dict]:
    rng = random.Random(seed)
    tasks, seen = [], set()
    n = n_train + n_eval
    i = 0
    while len(tasks) < n:
        template = TEMPLATES[i % len(TEMPLATES)]  # round-robin so both splits mix all kinds
        i += 1
        prompt, answer = template(rng)
        if prompt in seen:
            continue
        assert isinstance(answer, int) and answer >= 0, (template.__name__, answer)
        seen.add(prompt)
        idx = len(tasks)
        tasks.append({
            "id": f"arith-{idx:03d}",
            "prompt": prompt,
            "reference": str(answer),
            "split": "train" if idx < n_train else "eval",
        })
    return tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("arithmetic.tasks.jsonl"))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    tasks = make_tasks(args.seed)
    with args.out.open("w", encoding="utf-8", newline="\n") as f:
        for t in tasks:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    print(f"wrote {len(tasks)} tasks to {args.out}")


if __name__ == "__main__":
    main()
