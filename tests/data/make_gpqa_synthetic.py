"""Write tests/data/gpqa_diamond.csv: SYNTHETIC rows in the exact format of GPQA-Diamond's CSV.

    python tests/data/make_gpqa_synthetic.py

GPQA's authors ask that its questions not be published in plain text, so no real row ships
here. The header is the official export's (78 columns, same order); the questions, answers and
explanations below were written for these tests and are not GPQA's. Metadata columns get
plausible values; the validator columns stay empty. Like the real file: quoted fields hold
commas, quotes and newlines, the options are not shuffled (the correct answer is its own column),
and lines end in "\\n".
"""

from __future__ import annotations

import csv
from pathlib import Path

OUT = Path(__file__).resolve().parent / "gpqa_diamond.csv"

HEADER = (
    "Pre-Revision Question,Pre-Revision Correct Answer,Pre-Revision Incorrect Answer 1,"
    "Pre-Revision Incorrect Answer 2,Pre-Revision Incorrect Answer 3,Pre-Revision Explanation,"
    "Self-reported question-writing time (minutes),Question,Correct Answer,Incorrect Answer 1,"
    "Incorrect Answer 2,Incorrect Answer 3,Explanation,Revision Comments (from Question Writer),"
    "Subdomain,Writer's Difficulty Estimate,Extra Revised Question,Extra Revised Explanation,"
    "Extra Revised Correct Answer,Extra Revised Incorrect Answer 1,Extra Revised Incorrect Answer 2,"
    "Extra Revised Incorrect Answer 3,Non-Expert Validator Accuracy,Majority Non-Expert Vals Incorrect,"
    "Expert Validator Accuracy,Record ID,High-level domain,Question Writer,Feedback_EV_1,"
    "Validator Revision Suggestion_EV_1,Is First Validation_EV_1,Post hoc agreement_EV_1,"
    "Sufficient Expertise?_EV_1,Understand the question?_EV_1,Question Difficulty_EV_1,"
    "Validator Answered Correctly_EV_1,Self-reported time (minutes)_EV_1,Probability Correct_EV_1,"
    "Manual Correctness Adjustment_EV_1,Expert Validator_EV_1,Feedback_EV_2,"
    "Validator Revision Suggestion_EV_2,Is First Validation_EV_2,Post hoc agreement_EV_2,"
    "Sufficient Expertise?_EV_2,Understand the question?_EV_2,Question Difficulty_EV_2,"
    "Validator Answered Correctly_EV_2,Self-reported time (minutes)_EV_2,Probability Correct_EV_2,"
    "Manual Correctness Adjustment_EV_2,Expert Validator_EV_2,Feedback_NEV_1,"
    "Validator Answered Correctly_NEV_1,Explanation_NEV_1,Self-reported time (minutes)_NEV_1,"
    "Websites visited_NEV_1,Probability Correct_NEV_1,Manual Correctness Adjustment_NEV_1,"
    "Non-Expert Validator_NEV_1,Feedback_NEV_2,Validator Answered Correctly_NEV_2,Explanation_NEV_2,"
    "Self-reported time (minutes)_NEV_2,Websites visited_NEV_2,Probability Correct_NEV_2,"
    "Manual Correctness Adjustment_NEV_2,Non-Expert Validator_NEV_2,Feedback_NEV_3,"
    "Validator Answered Correctly_NEV_3,Explanation_NEV_3,Self-reported time (minutes)_NEV_3,"
    "Websites visited_NEV_3,Probability Correct_NEV_3,Manual Correctness Adjustment_NEV_3,"
    "Non-Expert Validator_NEV_3,Expert Validator Disagreement Category,Canary String"
).split(",")

# (high-level domain, subdomain, question, correct answer, three incorrect answers, explanation)
ROWS = [
    ("Physics", "Physics (general)",
     "A ball is dropped from rest at a height of 20 m. Ignoring air resistance and taking "
     "g = 10 m/s^2, how long does it take to reach the ground?",
     "2 s", ("4 s", "1 s", "20 s"), "h = g t^2 / 2 gives t = sqrt(2h/g) = 2 s."),
    ("Physics", "Quantum Mechanics",
     "A particle in a one-dimensional infinite square well of width L is in its ground state.\n"
     "By what factor does its energy change if the width is doubled?",
     "It falls to a quarter", ("It halves", "It doubles", "It is unchanged"),
     "E_n = n^2 h^2 / (8 m L^2), so doubling L divides E by 4."),
    ("Chemistry", "Organic Chemistry",
     "Which functional group is formed when an aldehyde is reduced with sodium borohydride?",
     "A primary alcohol", ("A carboxylic acid", "A ketone", "An ester"),
     "NaBH4 delivers a hydride to the carbonyl carbon; protonation gives a primary alcohol."),
    ("Chemistry", "Chemistry (general)",
     "What is the pH of a 0.001 M aqueous solution of HCl at 25 \u00b0C?",
     "3", ("1", "11", "7"), "HCl dissociates fully: [H+] = 10^-3 M, pH = 3."),
    ("Biology", "Molecular Biology",
     "During translation, which molecule carries the anticodon that pairs with an mRNA codon?",
     "Transfer RNA", ("Ribosomal RNA", "Messenger RNA", "DNA polymerase"),
     "tRNA molecules carry both the anticodon and the matching amino acid."),
    ("Physics", "Electromagnetism and Photonics",
     "Two identical point charges, each +q, sit 1 m apart. The distance is tripled.\n\n"
     "By what factor does the force between them change?",
     "1/9", ("1/3", "3", "9"), "Coulomb's law: F is proportional to 1/r^2."),
    ("Chemistry", "Inorganic Chemistry",
     "How many unpaired electrons does a free Fe^{3+} ion have in its ground state?",
     "5", ("3", "4", "0"), "Fe3+ is d5; Hund's rule puts one electron in each d orbital."),
    ("Physics", "Astrophysics",
     "A star's surface temperature doubles while its radius stays the same. By what factor does "
     "its luminosity change?",
     "16", ("2", "4", "8"), "Stefan-Boltzmann: L is proportional to R^2 T^4."),
    ("Biology", "Genetics",
     "Two parents heterozygous for a recessive allele (Aa x Aa) have a child. What is the "
     "probability the child shows the recessive phenotype?",
     "1/4", ("1/2", "3/4", "0"), "Only the aa genotype, one of four equally likely outcomes."),
    ("Chemistry", "Organic Chemistry",
     "Which reagent converts a \"terminal alkyne\" into a methyl ketone, following Markovnikov's "
     "rule?",
     "Aqueous H2SO4 with HgSO4", ("Disiamylborane, then H2O2/NaOH", "H2 with Lindlar's catalyst",
                                  "Sodium in liquid ammonia"),
     "Mercury-catalysed hydration gives the enol, which tautomerises to the methyl ketone."),
    ("Physics", "Relativistic Mechanics",
     "A muon moves at 0.6c relative to the lab. What Lorentz factor (gamma) does the lab assign "
     "to it?",
     "1.25", ("1.67", "0.8", "1.6"), "gamma = 1 / sqrt(1 - 0.36) = 1 / 0.8 = 1.25."),
    ("Physics", "High-energy particle physics",
     "Which force carrier mediates the beta decay of a free neutron?",
     "The W- boson", ("The photon", "The gluon", "The Z boson"),
     "A down quark turns into an up quark by emitting a W-, which decays to e- and an antineutrino."),
    ("Chemistry", "Chemistry (general)",
     "An ideal gas at 300 K is heated to 600 K at constant volume. What happens to its pressure?",
     "It doubles", ("It halves", "It is unchanged", "It quadruples"),
     "Gay-Lussac's law: P / T is constant at fixed volume and amount."),
    ("Biology", "Molecular Biology",
     "Which enzyme joins Okazaki fragments on the lagging strand during DNA replication?",
     "DNA ligase", ("Helicase", "Primase", "Topoisomerase"),
     "Ligase seals the nicks left after the RNA primers are replaced."),
    ("Physics", "Optics and Acoustics",
     "Light passes from air into glass with refractive index 1.5. Its wavelength inside the glass, "
     "compared with in air, is:",
     "shorter by a factor of 1.5", ("longer by a factor of 1.5", "unchanged",
                                    "shorter by a factor of 2.25"),
     "The frequency stays fixed and the speed drops by n, so the wavelength does too."),
    ("Chemistry", "Organic Chemistry",
     "Consider the SN2 reaction of (R)-2-bromobutane with sodium iodide in acetone.\n"
     "What is the configuration of the product, 2-iodobutane?",
     "(S)", ("(R)", "A racemic mixture", "Meso"),
     "SN2 proceeds with backside attack and inverts the stereocentre."),
    ("Physics", "Condensed Matter Physics",
     "In the free-electron model, how does the Fermi energy of a metal scale with the electron "
     "density n?",
     "As n^(2/3)", ("As n", "As n^(1/3)", "As n^2"), "E_F = (hbar^2 / 2m)(3 pi^2 n)^(2/3)."),
    ("Chemistry", "Chemistry (general)",
     "How many moles of O2 are needed to burn 2 moles of methane completely?",
     "4", ("2", "1", "3"), "CH4 + 2 O2 -> CO2 + 2 H2O, so 2 mol CH4 need 4 mol O2."),
    ("Physics", "Quantum Mechanics",
     "What are the possible results of measuring S_z for a spin-1/2 particle, in units of hbar?",
     "+1/2 or -1/2", ("0 or 1", "+1, 0 or -1", "Any value between -1/2 and +1/2"),
     "A spin-1/2 particle has two S_z eigenvalues, +hbar/2 and -hbar/2."),
    ("Biology", "Genetics",
     "A DNA strand reads 5'-ATGC-3'. What is the sequence of its complementary strand, "
     "written 5' to 3'?",
     "5'-GCAT-3'", ("5'-TACG-3'", "5'-CGTA-3'", "5'-ATGC-3'"),
     "The complement is 3'-TACG-5', which reads GCAT from its 5' end."),
]

DIFFICULTY = "Hard undergraduate level (could be a question on a hard undergraduate exam for students majoring in the subject)"


def record(n: int, row: tuple) -> dict[str, str]:
    domain, sub, question, correct, wrong, explanation = row
    out = dict.fromkeys(HEADER, "")
    out.update({
        "Pre-Revision Question": question, "Pre-Revision Correct Answer": correct,
        "Pre-Revision Incorrect Answer 1": wrong[0], "Pre-Revision Incorrect Answer 2": wrong[1],
        "Pre-Revision Incorrect Answer 3": wrong[2], "Pre-Revision Explanation": explanation,
        "Self-reported question-writing time (minutes)": "15.0",
        "Question": question, "Correct Answer": correct, "Incorrect Answer 1": wrong[0],
        "Incorrect Answer 2": wrong[1], "Incorrect Answer 3": wrong[2], "Explanation": explanation,
        "Subdomain": sub, "Writer's Difficulty Estimate": DIFFICULTY,
        "Non-Expert Validator Accuracy": "0.0", "Majority Non-Expert Vals Incorrect": "1.0",
        "Expert Validator Accuracy": "1.0",
        "Record ID": f"recSynthetic{n:05d}",   # real ids look like rec + 14 letters/digits
        "High-level domain": domain, "Question Writer": "synthetic",
        "Canary String": "synthetic test row, not GPQA data",
    })
    return out


def main(out: Path = OUT) -> None:
    assert len(HEADER) == 78 and len(set(HEADER)) == 78
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        w.writeheader()
        for n, row in enumerate(ROWS, 1):
            w.writerow(record(n, row))
    print(f"{out.name}: {len(ROWS)} synthetic rows, {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
