/* weft web tokenizers: weft's char, byte, word and byte-level BPE tokenizers in JavaScript.
 *
 * Defines `weftTokenizers.create(spec)` for the "tokenizer" entry of model.json: an object with
 * encode(text) -> ids and decoder(contextIds) -> {push(id) -> text, finish() -> text}, which
 * streams text whose pieces join to the full decode (byte tokens through one UTF-8 decoder, so
 * a character shows once all its bytes have come; word tokens through the detokenizer's rules,
 * tokenizers/detokenize.py, whose state follows the whole sequence).
 */
"use strict";

const weftTokenizers = (() => {
  // ------------------------------------------------------------ char
  function charTokenizer(spec) {
    const chars = new Map(Object.entries(spec.chars));
    return {
      encode: (text) => Array.from(text, (ch) => chars.get(ch) ?? spec.unk_id),
      decoder: () => ({ push: (id) => spec.pieces[id], finish: () => "" }),
    };
  }

  // ------------------------------------------------------------ bytes (byte level and BPE)
  function utf8Decoder(bytesOf, context) {
    const utf8 = new TextDecoder("utf-8");
    utf8.decode(bytesOf(context), { stream: true });
    return {
      push: (id) => utf8.decode(bytesOf([id]), { stream: true }),
      finish: () => utf8.decode(),
    };
  }

  function byteTokenizer(spec) {
    const offset = spec.offset;
    const bytesOf = (ids) => Uint8Array.from(
      ids.filter((id) => id >= offset && id < offset + 256), (id) => id - offset);
    return {
      encode: (text) => Array.from(new TextEncoder().encode(text), (b) => b + offset),
      decoder: (context) => utf8Decoder(bytesOf, context),
    };
  }

  // GPT-2's pre-tokenization, as Hugging Face's ByteLevel pre-tokenizer applies it
  const BPE_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

  function byteChars() {  // GPT-2's table: each byte as a printable character
    const printable = [];
    for (let b = 33; b <= 126; b++) printable.push(b);
    for (let b = 161; b <= 172; b++) printable.push(b);
    for (let b = 174; b <= 255; b++) printable.push(b);
    const table = new Array(256);
    let extra = 0;
    for (let b = 0; b < 256; b++) {
      table[b] = String.fromCharCode(printable.includes(b) ? b : 256 + extra++);
    }
    return table;
  }

  function bpeTokenizer(spec) {
    const charOf = byteChars(), byteOf = new Map(charOf.map((c, b) => [c, b]));
    const vocab = new Map(spec.tokens.map((t, i) => [t, i]));
    const ranks = new Map(spec.merges.map(([a, b], i) => [`${a} ${b}`, i]));
    const special = new Set(spec.special_ids);
    const tokenBytes = spec.tokens.map(
      (t, i) => (special.has(i) ? [] : Array.from(t, (c) => byteOf.get(c))));
    const cache = new Map();
    const encodeWord = (word) => {  // merge the lowest-ranked pair until none is left
      let parts = Array.from(word);
      for (;;) {
        let best = -1, bestRank = Infinity;
        for (let i = 0; i + 1 < parts.length; i++) {
          const rank = ranks.get(`${parts[i]} ${parts[i + 1]}`);
          if (rank !== undefined && rank < bestRank) { bestRank = rank; best = i; }
        }
        if (best < 0) break;
        const merged = parts[best] + parts[best + 1];
        const next = [];
        for (let i = 0; i < parts.length; i++) {  // every occurrence of that pair, left first
          if (i + 1 < parts.length && parts[i] + parts[i + 1] === merged &&
              parts[i] === parts[best] && parts[i + 1] === parts[best + 1]) {
            next.push(merged); i++;
          } else {
            next.push(parts[i]);
          }
        }
        parts = next;
      }
      return parts.map((p) => vocab.get(p));
    };
    return {
      encode: (text) => {
        const ids = [];
        for (const [word] of text.matchAll(BPE_SPLIT)) {
          const key = Array.from(new TextEncoder().encode(word), (b) => charOf[b]).join("");
          if (!cache.has(key)) cache.set(key, encodeWord(key));
          ids.push(...cache.get(key));
        }
        return ids;
      },
      decoder: (context) => utf8Decoder(
        (ids) => Uint8Array.from(ids.flatMap((id) => tokenBytes[id])), context),
    };
  }

  // ------------------------------------------------------------ word level
  // tokenizers/word.py's TOKEN_PATTERN with Unicode classes for Python's \w and \d
  const WORD_SPLIT = new RegExp([
    "\\n", "(?:https?://|www\\.)\\S+", "\\p{Nd}+(?:[.,:]\\p{Nd}+)+",
    "(?:[\\p{L}\\p{Nl}\\p{No}]\\.){2,}", "[\\p{L}\\p{N}]+(?:['’\\-][\\p{L}\\p{N}]+)*",
    "\\.{2,}|-{2,}", "[^\\p{L}\\p{N}_\\s]|_",
  ].join("|"), "gu");
  const PRETOKENIZED_SPLIT = /\n|[^\s]+/gu;
  const NO_SPACE_BEFORE = new Set([...",.;:!?)]}%…”’»", "..."]);
  const NO_SPACE_AFTER = new Set([..."([{$#@“‘«¿¡"]);
  const ATTACH_BOTH = new Set(["--", "—", "/"]);
  const TOGGLE_QUOTES = new Set(['"', "'"]);
  const JOINING_MARKERS = { "@-@": "-", "@,@": ",", "@.@": "." };
  const CLITIC = /^(?:'[a-zA-Z]{1,2}|n't|N'T)$/;

  function detokenizer(pretokenized) {  // detokenize.py's Detokenizer, step for step
    let attach = true, previous = "";
    const openQuotes = new Set();
    return (token) => {
      if (token === "\n") {
        if (previous === "\n") openQuotes.clear();
        attach = true; previous = token;
        return token;
      }
      if (pretokenized && token in JOINING_MARKERS) {
        attach = true; previous = token;
        return JOINING_MARKERS[token];
      }
      if (pretokenized && CLITIC.test(token)) {
        attach = false; previous = token;
        return token;
      }
      let space, attachNext;
      if (TOGGLE_QUOTES.has(token)) {
        if (openQuotes.has(token)) { openQuotes.delete(token); space = false; attachNext = false; }
        else { openQuotes.add(token); space = !attach; attachNext = true; }
      } else if (ATTACH_BOTH.has(token)) {
        space = false; attachNext = true;
      } else {
        space = !attach && !NO_SPACE_BEFORE.has(token);
        attachNext = NO_SPACE_AFTER.has(token);
      }
      attach = attachNext; previous = token;
      return space ? " " + token : token;
    };
  }

  function wordTokenizer(spec) {
    const index = new Map(Object.entries(spec.index));
    const hidden = new Set(spec.hidden_ids);  // special tokens other than <unk>
    const pattern = spec.pretokenized ? PRETOKENIZED_SPLIT : WORD_SPLIT;
    const visible = (ids) => ids.filter((id) => !hidden.has(id)).map((id) => spec.tokens[id]);
    return {
      encode: (text) => Array.from(text.matchAll(pattern), ([t]) => index.get(t) ?? spec.unk_id),
      decoder: (context) => {
        const push = detokenizer(spec.pretokenized);
        visible(context).forEach(push);
        return { push: (id) => visible([id]).map(push).join(""), finish: () => "" };
      },
    };
  }

  const KINDS = {
    char: charTokenizer, byte: byteTokenizer, bpe: bpeTokenizer, word: wordTokenizer,
  };

  function create(spec) {
    if (!(spec.type in KINDS)) throw new Error(`no ${spec.type} tokenizer in this runtime`);
    return KINDS[spec.type](spec);
  }

  return { create };
})();
