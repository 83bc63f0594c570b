"""The LICENSE.md that ships beside a base model: every source it read, with its credit and
licence, made from the corpus names in the model's config.json.

The credits are those each source asks for (the shared data's SOURCES.md files): CC BY-SA 4.0
sources (the UD treebanks, the Schema-Guided Dialogue dataset) make the weights CC BY-SA 4.0;
CC BY 4.0 sources want their credit; MIT and WordNet's licence want their notices kept.
"""

from __future__ import annotations

# A corpus name (the file or folder name in config.json, weight and all) -> its credit line.
# Matched by prefix, so that "chitchat.txt:1" finds "chitchat.txt".
CREDITS: dict[str, str] = {
    "gutenberg": "22 public-domain Project Gutenberg books (novels and essays of the 18th and "
                 "19th centuries).",
    "books-1900-1955.txt": "Novels, stories and plays of 1900-1955 by P. G. Wodehouse, Jack "
                           "London, Edith Wharton, Edgar Rice Burroughs, G. K. Chesterton, "
                           "L. M. Montgomery, Bernard Shaw and others, from Project Gutenberg: "
                           "public domain in the US.",
    "ewt-train.txt": "The training part of the Universal Dependencies English Web Treebank, "
                     "CC BY-SA 4.0: Silveira et al. 2014, \"A Gold Standard Dependency Corpus "
                     "for English\", built on the LDC English Web Treebank.",
    "schema-guided-dialogue.txt": "Schema-Guided Dialogue dataset, Rastogi et al. 2020, Google "
                                  "Research, CC BY-SA 4.0.",
    "taskmaster-4.txt": "Taskmaster (Taskmaster-4), Byrne et al., Google Research, CC BY 4.0.",
    "broad-twitter-corpus.txt": "Broad Twitter Corpus, Derczynski, Bontcheva and Roberts, "
                                "\"Broad Twitter Corpus: A Diverse Named Entity Recognition "
                                "Resource\", COLING 2016, CC BY 4.0.",
    "ud-atis-eslspok.txt": "Universal Dependencies English Atis and ESLSpok treebanks (train "
                           "and dev parts), CC BY-SA 4.0.",
    "chitchat.txt": "chitchat-dataset 0.9.0, MIT licence: \"Copyright (c) 2019 Perception, "
                    "Control and Cognition Lab. Permission is hereby granted, free of charge, "
                    "to any person obtaining a copy of this software and associated "
                    "documentation files, to deal in the Software without restriction, "
                    "subject to the above copyright notice and this permission notice being "
                    "included in all copies or substantial portions of the Software.\"",
    "masc.txt": "MASC, the Manually Annotated Sub-Corpus of the Open American National Corpus "
                "(blogs, e-mail, spoken conversation, jokes, letters, tweets), open data.",
    "wordnet-glosses.txt": "WordNet 3.0 glosses and example sentences. WordNet 3.0 Copyright "
                           "2006 by Princeton University. All rights reserved. Used under the "
                           "WordNet 3.0 licence.",
    "jargon-file.txt": "The Jargon File 4.4.7, public domain.",
    "fortunes.txt": "Fortunes from Debian's fortunes packages (BSD licence; the BOFH excuses "
                    "are public domain).",
}
WEB_TEXT_OF_STAGE_2 = "-ewt-train.txt"  # stage 2 names its EWT copy after the run


def credit(corpus_name: str, books: str = "gutenberg") -> str:
    """The credit line of one corpus name from config.json; ``books`` is the name of the folder
    of Gutenberg books the model was trained from."""
    name = corpus_name.rsplit(":", 1)[0] if ":" in corpus_name else corpus_name
    if name.endswith(WEB_TEXT_OF_STAGE_2):
        name = "ewt-train.txt"
    if name == books:
        name = "gutenberg"
    for key, line in CREDITS.items():
        if name == key or name.startswith(key):
            return line
    raise SystemExit(f"no credit is known for the corpus {corpus_name!r}: add it to "
                     "tools/base_model_licence.py before shipping a model trained on it")


def licence_text(corpus_names: list[str], books: str = "gutenberg",
                 model: str = "builtin:english") -> str:
    """LICENSE.md for a model whose last stage read ``corpus_names`` (each stage reads the
    sources of the stages before it too, so the last stage's corpus names them all)."""
    unique = list(dict.fromkeys(credit(name, books) for name in corpus_names))
    body = "\n".join(f"- {line}" for line in unique)
    return (f"# {model}: where its weights come from\n\n"
            "Trained by weft itself with `tools/train_base_model.py` (see docs/base-model.md), "
            "on:\n\n" + body + "\n\n"
            "These weights are offered under CC BY-SA 4.0 "
            "(https://creativecommons.org/licenses/by-sa/4.0/), as the CC BY-SA sources above "
            "ask, with the attributions above; weft's code is MIT.\n")
