/**
 * Prompt encoding, the JS half: diffusers' `encode_prompt` inputs for one call — prompts and
 * negative prompts through `maybe_convert_prompt` (textual inversion), the CLIP tokenizer(s), and
 * with `promptWeighting: 'a1111'` AUTOMATIC1111's emphasis weights and 75-token chunks. SDXL
 * tokenizes `prompt_2` / `negative_prompt_2` with `tokenizer_2`. The native pipeline runs the
 * text encoders on these ids (native/core/pipelines).
 */
import { InvalidArgumentError, toSdError } from '../errors.js';
import { maybeConvertPrompt } from '../loaders/textual_inversion.js';
import { weightedTokens } from '../prompt-weighting.js';
import type { CLIPTokenizer } from '../tokenizer.js';
import type { ResolvedGenerateOptions } from '../options.js';
import type { NativeXLGenerateRequest, TensorData } from '../../types/native.js';

/** The token fields of a native request (SDXL's `…2` fields only for two-tokenizer models). */
export type PromptInputs = Pick<NativeXLGenerateRequest,
  'inputIds' | 'negativeInputIds' | 'promptWeights' | 'negativePromptWeights' |
  'inputIds2' | 'negativeInputIds2' | 'promptWeights2' | 'negativePromptWeights2'>;

/**
 * Characters of a prompt the default (truncating) tokenization looks at. CLIP keeps 77 tokens, and
 * a CLIP token is rarely more than a dozen characters, so the first 2,048 characters (cut back to a
 * whitespace, where CLIP's pre-tokenizer always splits, so the ids are those of the whole text)
 * hold them many times over; the rest of a 100k-character prompt is not tokenized at all.
 */
export const TOKENIZE_HEAD_CHARS = 2048;

/**
 * The start of `text` that the first `TOKENIZE_HEAD_CHARS` characters give, cut at the last
 * whitespace (so no word is split); the whole text when it is short or has no whitespace there.
 */
export function textHead(text: string, max = TOKENIZE_HEAD_CHARS): string {
  if (text.length <= max) return text;
  for (let i = max; i > max >> 1; i--) if (/\s/.test(text[i])) return text.slice(0, i);
  return text; // no whitespace in the second half of the window: a giant word, tokenized whole
}

/**
 * `texts` → `[texts.length, 77]` int64 ids (padded, truncated with a warning as diffusers does).
 * Only the head of a long prompt is tokenized ({@link TOKENIZE_HEAD_CHARS}): the ids are the same,
 * and the warning then says "at least N tokens".
 */
export function tokenize(tok: CLIPTokenizer, texts: string[], field: string): TensorData<BigInt64Array> {
  let rows: number[][];
  const counts: Array<{ n: number; atLeast: boolean }> = [];
  try {
    rows = texts.map((t) => {
      let head = textHead(t);
      const ids = tok.encode(head); // padded and truncated: the ids of the whole text (see textHead)
      let n = tok.encode(head, { padding: false, truncation: false }).length;
      if (head !== t && n <= ids.length) {
        // a head of mostly whitespace/symbols that holds too few tokens: the whole text, as before
        head = t;
        n = tok.encode(t, { padding: false, truncation: false }).length;
        counts.push({ n, atLeast: false });
        return tok.encode(t);
      }
      counts.push({ n, atLeast: head !== t });
      return ids;
    });
  } catch (e) {
    throw toSdError(e);
  }
  const len = rows[0].length;
  const data = new BigInt64Array(texts.length * len);
  rows.forEach((ids, i) => {
    if (ids.length !== len) throw new InvalidArgumentError(`${field}[${i}] tokenized to ${ids.length} ids, not ${len}`);
    for (let j = 0; j < len; j++) data[i * len + j] = BigInt(ids[j]);
    // diffusers warns when CLIP truncates a prompt; so do we (once per prompt).
    const { n, atLeast } = counts[i];
    if (n > len) {
      process.emitWarning(`${field}${texts.length > 1 ? `[${i}]` : ''} has ${atLeast ? 'at least ' : ''}${n} tokens; CLIP keeps the first ${len} (the rest is ignored)`,
        { code: 'SD_PROMPT_TRUNCATED' });
    }
  });
  return { data, shape: [texts.length, len] };
}

/**
 * Tokenizes the prompts of one call.
 * @param tokenizers - the model's tokenizers in text-encoder order (SDXL: tokenizer, tokenizer_2;
 *   a refiner has only tokenizer_2, used as the first)
 * @param xl - an SDXL model: with two tokenizers the `…2` fields are filled
 * @param o - the resolved options (prompts already stripped of `<lora:…>` tags)
 */
export function encodePromptInputs(tokenizers: CLIPTokenizer[], xl: boolean, o: ResolvedGenerateOptions): PromptInputs {
  // diffusers: negative prompt "" when none is given; nothing is encoded without CFG
  const cfg = o.guidanceScale > 1;
  // diffusers' maybe_convert_prompt (textual-inversion tokens → all their vectors' tokens), per tokenizer
  const conv = (ps: string[], tok = tokenizers[0]) => ps.map((p) => maybeConvertPrompt(tok, p));
  const xl2 = xl && tokenizers.length > 1;
  // diffusers SDXL: prompt_2 defaults to prompt, negative_prompt_2 to negative_prompt
  const prompts2 = o.prompts2 ?? o.prompts;
  const negatives = o.negativePrompts ?? o.prompts.map(() => '');
  const negatives2 = o.negativePrompts2 ?? negatives;
  // AUTOMATIC1111 emphasis and 75-token chunks (lib/prompt-weighting.ts); SDXL: both tokenizers,
  // padded to the same chunk count
  let weighted: ReturnType<typeof weightedTokens> | undefined;
  let weighted2: ReturnType<typeof weightedTokens> | undefined;
  if (o.promptWeighting === 'a1111') {
    const groups = [conv(o.prompts)];
    if (cfg) groups.push(conv(negatives));
    weighted = weightedTokens(tokenizers[0], groups, 1, ['prompt', 'negativePrompt']);
    if (xl2) {
      const groups2 = [conv(prompts2, tokenizers[1])];
      if (cfg) groups2.push(conv(negatives2, tokenizers[1]));
      const k1 = weighted[0].ids.shape[1] / 77;
      weighted2 = weightedTokens(tokenizers[1], groups2, k1, ['prompt2', 'negativePrompt2']);
      const k2 = weighted2[0].ids.shape[1] / 77;
      if (k2 > k1) weighted = weightedTokens(tokenizers[0], groups, k2, ['prompt', 'negativePrompt']);
    }
  }
  const out: PromptInputs = {
    inputIds: weighted ? weighted[0].ids : tokenize(tokenizers[0], conv(o.prompts), 'prompt'),
    negativeInputIds: weighted ? weighted[1]?.ids : cfg ? tokenize(tokenizers[0], conv(negatives), 'negativePrompt') : undefined,
    promptWeights: weighted?.[0].weights,
    negativePromptWeights: weighted?.[1]?.weights,
  };
  if (xl2) {
    out.inputIds2 = weighted2 ? weighted2[0].ids : tokenize(tokenizers[1], conv(prompts2, tokenizers[1]), 'prompt2');
    out.promptWeights2 = weighted2?.[0].weights;
    if (cfg) {
      out.negativeInputIds2 = weighted2 ? weighted2[1].ids : tokenize(tokenizers[1], conv(negatives2, tokenizers[1]), 'negativePrompt2');
      out.negativePromptWeights2 = weighted2?.[1].weights;
    }
  }
  return out;
}
