#!/usr/bin/env python3
"""Writes a campaign CSV of N rows with the phone formats real Brazilian
exports have (national, +55, 0xx, dotted, bare E.164), a shared contact
card, optional delay/typing with decimal commas, tags and metadata.
About 1% of rows are deliberately invalid and 0.5% are duplicates.

    python3 benches/gen_campaign.py 1000000 > c1m.csv
"""
import random
import sys

FORMS = [
    lambda a, n: f"({a}) 9{n[:4]}-{n[4:]}",
    lambda a, n: f"+55 {a} 9{n[:4]}-{n[4:]}",
    lambda a, n: f"55{a}9{n}",
    lambda a, n: f"0{a} 9{n[:4]} {n[4:]}",
    lambda a, n: f"{a}.9{n[:4]}.{n[4:]}",
]
AREAS = [11, 21, 31, 41, 51, 61, 71, 81, 85, 19]


def main():
    rows = int(sys.argv[1])
    rng = random.Random(7)
    out = sys.stdout
    out.write("to,contact_name,contact_phone,delay,typing,tags,metadata.leadId\n")
    for i in range(rows):
        roll = rng.random()
        if roll < 0.01:
            to = f"12{i % 1000}"  # too short
        elif roll < 0.015 and i > 0:
            j = rng.randrange(i)
            to = f"{AREAS[j % len(AREAS)]}9{j:08d}"  # repeats an earlier row
        else:
            to = rng.choice(FORMS)(AREAS[i % len(AREAS)], f"{i:08d}")
        delay = rng.choice(["", "", "3", "\"2,5\""])
        out.write(f"{to},Pessoa {i},+55 11 3003-4000,{delay},,lead|sp,L-{i}\n")


if __name__ == "__main__":
    main()
