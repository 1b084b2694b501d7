/* tests/test_families.c - the model families hearth runs, each as a tiny
 * random checkpoint written twice: as a Hugging Face folder (config.json of
 * that family, safetensors, tok512.model) and as a GGUF file of the same
 * weights and vocabulary, the way llama.cpp's convert_hf_to_gguf.py lays
 * that family out. Both are exported with ./export (F32) and must give the
 * same logits (1e-5) over a token sequence.
 *
 * The SmolLM2-style family carries a small byte-level BPE vocabulary
 * instead, written by this file as SmolLM2 ships it (tokenizer.json with the
 * pre-tokenizer Sequence [Digits individual_digits, ByteLevel]) and as
 * llama.cpp converts it (tokenizer.ggml.model "gpt2", pre "smollm"); both
 * exports must also give the same ids for strings with digits, equal to
 * ids worked out by hand from the Digits + GPT-2 rules.
 *
 * Not here: tokenization in depth (tokenizers have their own tests),
 * quantized types, hostile input (test_hf.c and test_gguf.c). GGUF files
 * are written with the test writer gguf_writer.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../exporter/source.h"
#include "../model.h"
#include "gguf_writer.h"
#include "synth.h"
#include "test.h"

#define TOK512 "tests/data/tok512.model"
#define N_POS 40u          /* longer than the Mistral-style window below */

/* ---- a synth model as a GGUF file ------------------------------------------ */

/* convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors) turns Llama 3
 * rope_scaling into rope_freqs.weight: per rotary pair i, with wavelength
 * 2 pi theta^(2i/head_dim), the divisor 1 below orig / high, factor above
 * orig / low, and 1 / ((1 - smooth) / factor + smooth) between, smooth =
 * (orig / wavelength - low) / (high - low) (FACTS.md, llama3 scaling). */
static void rope_divisors(const struct synth_model *sm, float *div, uint32_t n)
{
    const struct synth_variant *v = &sm->var;
    double hd = (double)sm->cfg.dim / sm->cfg.n_heads, orig = v->rope_orig_max_seq_len;
    for (uint32_t i = 0; i < n; i++) {
        double wl = 2 * M_PI * pow(sm->cfg.rope_theta, 2.0 * i / hd);
        double low = v->rope_low_freq_factor, high = v->rope_high_freq_factor;
        if (wl < orig / high) {
            div[i] = 1.0f;
        } else if (wl > orig / low) {
            div[i] = v->rope_factor;
        } else {
            double smooth = (orig / wl - low) / (high - low);
            div[i] = (float)(1.0 / ((1.0 - smooth) / v->rope_factor + smooth));
        }
    }
}

/* ---- a SmolLM2-style byte-level vocabulary ----------------------------------
 * Ids as SmolLM2's tokenizer.json starts: 0 <|endoftext|>, 1 <|im_start|>,
 * 2 <|im_end|> (special added tokens, also in model.vocab); then byte b is
 * id SMOL_BYTE + b; then one piece per merge, in rank order. The merges
 * "1 2" and " 1" must never apply: Digits makes every digit a piece. */

static const char *const SMOL_SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
#define SMOL_BYTE 3
#define SMOL_MERGED (SMOL_BYTE + 256)
static const struct {
    const char *left, *right;
} SMOL_MERGES[] = {
    {" ", "t"}, {"h", "e"}, {" t", "he"}, {"1", "2"},
    {" ", "1"}, {"a", "b"}, {" ", "ab"}, {"'", "s"},
};
#define SMOL_N_MERGES (sizeof SMOL_MERGES / sizeof SMOL_MERGES[0])
#define SMOL_N_TOKENS (SMOL_MERGED + SMOL_N_MERGES)
#define SMOL_PRE "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", " \
                 "\"individual_digits\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": " \
                 "false, \"trim_offsets\": true, \"use_regex\": true}]}"

/* raw bytes s[0..n) spelled in the GPT-2 byte alphabet (out: 2 n + 1). */
static void gpt2_spell(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += tokenizer_gpt2_char((uint8_t)s[i], out + k);
    out[k] = 0;
}

/* Token id's text as tokenizer.json's vocab and GGUF's token list spell
 * it: special tokens as they are, the others in the GPT-2 alphabet. */
static void smol_token(uint32_t id, char *out)
{
    if (id < SMOL_BYTE) {
        strcpy(out, SMOL_SPECIALS[id]);
    } else if (id < SMOL_MERGED) {
        char b = (char)(id - SMOL_BYTE);
        gpt2_spell(&b, 1, out);
    } else {
        char raw[64];
        snprintf(raw, sizeof raw, "%s%s", SMOL_MERGES[id - SMOL_MERGED].left,
                 SMOL_MERGES[id - SMOL_MERGED].right);
        gpt2_spell(raw, strlen(raw), out);
    }
}

/* Merge r as "LEFT RIGHT" in the alphabet. */
static void smol_merge(size_t r, char *out)
{
    char a[32], b[32];
    gpt2_spell(SMOL_MERGES[r].left, strlen(SMOL_MERGES[r].left), a);
    gpt2_spell(SMOL_MERGES[r].right, strlen(SMOL_MERGES[r].right), b);
    sprintf(out, "%s %s", a, b);
}

/* s as a JSON string literal body: the alphabet holds '"' and '\\'. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* dir/tokenizer.json in the layout of SmolLM2's own. */
static int write_smol_json(const char *dir)
{
    char path[4096], tok[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
               "  \"added_tokens\": [");
    for (uint32_t id = 0; id < SMOL_BYTE; id++)
        fprintf(f, "%s\n    {\"id\": %u, \"content\": \"%s\", \"single_word\": false, "
                "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": "
                "true}", id ? "," : "", id, SMOL_SPECIALS[id]);
    fprintf(f, "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": %s,\n"
               "  \"post_processor\": null,\n  \"decoder\": {\"type\": \"ByteLevel\", "
               "\"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
               "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
               "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
               "\"fuse_unk\": false, \"byte_fallback\": false,\n    \"vocab\": {", SMOL_PRE);
    for (uint32_t id = 0; id < SMOL_N_TOKENS; id++) {
        smol_token(id, tok);
        fprintf(f, "%s", id ? ", " : "");
        put_json_string(f, tok);
        fprintf(f, ": %u", id);
    }
    fprintf(f, "},\n    \"merges\": [");
    for (size_t r = 0; r < SMOL_N_MERGES; r++) {
        smol_merge(r, tok);
        fprintf(f, "%s", r ? ", " : "");
        put_json_string(f, tok);
    }
    fprintf(f, "]\n  }\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* tokenizer.ggml.* as convert_hf_to_gguf.py writes SmolLM2's (model
 * "gpt2", pre "smollm", token types 3 control / 1 normal, merges in the
 * alphabet); BOS and EOS as synth_write_hf's config.json names them. */
static void gg_vocab_smol(struct gg *g)
{
    char *tokens[SMOL_N_TOKENS], *merges[SMOL_N_MERGES];
    int32_t types[SMOL_N_TOKENS];
    for (uint32_t id = 0; id < SMOL_N_TOKENS; id++) {
        tokens[id] = malloc(128);
        smol_token(id, tokens[id]);
        types[id] = id < SMOL_BYTE ? HEARTH_TOKEN_CONTROL : HEARTH_TOKEN_NORMAL;
    }
    for (size_t r = 0; r < SMOL_N_MERGES; r++) {
        merges[r] = malloc(128);
        smol_merge(r, merges[r]);
    }
    kv_str(g, "tokenizer.ggml.model", "gpt2");
    kv_str(g, "tokenizer.ggml.pre", "smollm");
    kv_strs(g, "tokenizer.ggml.tokens", tokens, NULL, SMOL_N_TOKENS);
    kv_arr32(g, "tokenizer.ggml.token_type", V_I32, types, SMOL_N_TOKENS);
    kv_strs(g, "tokenizer.ggml.merges", merges, NULL, SMOL_N_MERGES);
    kv_u32(g, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(g, "tokenizer.ggml.eos_token_id", 2);
    for (uint32_t id = 0; id < SMOL_N_TOKENS; id++)
        free(tokens[id]);
    for (size_t r = 0; r < SMOL_N_MERGES; r++)
        free(merges[r]);
}

/* The model as GGUF of architecture arch ("llama" or "qwen2", see gg_model)
 * with F32 tensors, its q/k/v biases if it has them, the SentencePiece
 * vocabulary v (NULL: the SmolLM2-style one) and, with Llama 3 rope
 * scaling, rope_freqs.weight. */
static int write_gguf(const struct synth_model *sm, const char *arch, const struct vocab *v,
                      const char *path)
{
    uint32_t half = (uint32_t)(sm->cfg.dim / sm->cfg.n_heads / 2);
    struct gg_opts o = {.arch = arch, .types = {G_F32, G_F32}, .bq = sm->bq, .bk = sm->bk,
                        .bv = sm->bv};
    struct gg g;
    gg_init(&g);
    gg_model(&g, sm, &o);
    if (v)
        gg_vocab_spm(&g, v);
    else
        gg_vocab_smol(&g);
    if (sm->var.rope_factor > 0) {
        float div[256];
        rope_divisors(sm, div, half);
        gg_tensor(&g, "rope_freqs.weight", G_F32, 1, half, div, half * sizeof *div);
    }
    int rc = gg_write(&g, path);
    gg_free(&g);
    return rc;
}

/* ---- the comparison ---------------------------------------------------------- */

static int export_f32(const char *source, const char *out)
{
    char cmd[8192], *errout = NULL;
    snprintf(cmd, sizeof cmd, "./export '%s' --type f32 -q -o '%s'", source, out);
    int rc = test_run(cmd, NULL, &errout);
    CHECK(rc == 0, "%s: %s", cmd, errout ? errout : "");
    free(errout);
    return rc;
}

/* Runs the same tokens (BOS, then random ids) through both models and
 * stores the largest |logit difference| at each position in diff. */
static int logit_diffs(const struct model *a, const struct model *b, float *diff)
{
    struct state sa, sb;
    char err[HEARTH_ERR_BYTES];
    if (state_init(&sa, a, N_POS, NULL, NULL, err) < 0) {
        CHECK(0, "state_init: %s", err);
        return -1;
    }
    if (state_init(&sb, b, N_POS, NULL, NULL, err) < 0) {
        CHECK(0, "state_init: %s", err);
        state_free(&sa);
        return -1;
    }
    uint64_t rng = 4242;
    for (uint32_t pos = 0; pos < N_POS; pos++) {
        int32_t tok = pos ? (int32_t)(test_rand_u64(&rng) % a->cfg.vocab_size)
                          : (int32_t)a->cfg.bos_id;
        const float *la = model_forward(a, &sa, tok, pos), *lb = model_forward(b, &sb, tok, pos);
        diff[pos] = 0;
        for (uint32_t i = 0; i < a->cfg.vocab_size; i++) {
            float d = fabsf(la[i] - lb[i]);
            diff[pos] = d > diff[pos] || isnan(d) ? d : diff[pos];
        }
    }
    state_free(&sa);
    state_free(&sb);
    return 0;
}

static float max_over(const float *diff, uint32_t from, uint32_t to)
{
    float worst = 0;
    for (uint32_t i = from; i < to; i++)
        worst = diff[i] > worst || isnan(diff[i]) ? diff[i] : worst;
    return worst;
}

struct family {
    const char *name;
    const char *gguf_arch;
    struct synth_config cfg;
    struct synth_variant var;
    int smol_vocab; /* the SmolLM2-style byte-level vocabulary, not tok512 */
};

/* What the HF export's header must say for the family's config.json. */
static void check_header(const struct family *f, const struct hearth_header *h)
{
    const struct synth_variant *v = &f->var;
    int qwen2 = v->architecture && !strcmp(v->architecture, "Qwen2ForCausalLM");
    CHECK(h->n_heads == (uint32_t)f->cfg.n_heads && h->n_kv_heads == (uint32_t)f->cfg.n_kv_heads,
          "%s: heads %u/%u", f->name, h->n_heads, h->n_kv_heads);
    CHECK(!!(h->flags & HEARTH_FLAG_TIED_EMBEDDINGS) == !!f->cfg.tied, "%s: tied flag %u",
          f->name, h->flags);
    CHECK(!!(h->flags & HEARTH_FLAG_QKV_BIAS) == !!v->qkv_bias, "%s: bias flag %u", f->name,
          h->flags);
    CHECK(v->rope_factor > 0 ? h->rope_scaling == HEARTH_ROPE_SCALING_LLAMA3 &&
          h->rope_factor == v->rope_factor &&
          h->rope_orig_max_seq_len == (uint32_t)v->rope_orig_max_seq_len
          : h->rope_scaling == HEARTH_ROPE_SCALING_NONE,
          "%s: rope scaling %u factor %g orig %u", f->name, h->rope_scaling, h->rope_factor,
          h->rope_orig_max_seq_len);
    /* Qwen2's sliding_window counts only with use_sliding_window true. */
    uint32_t window = qwen2 ? 0 : (uint32_t)v->sliding_window;
    CHECK(h->sliding_window == window, "%s: sliding_window %u, expected %u", f->name,
          h->sliding_window, window);
}

/* The window of a Mistral-style model really limits attention: run without
 * it, positions before the window agree and later ones do not. */
static void check_window_matters(const struct family *f, const struct model *hf,
                                 const struct model *gg)
{
    float diff[N_POS];
    uint32_t w = hf->cfg.sliding_window;
    if (logit_diffs(hf, gg, diff) < 0)
        return;
    CHECK(max_over(diff, 0, w) <= 1e-5f, "%s: before the window, logits differ by %g", f->name,
          max_over(diff, 0, w));
    CHECK(max_over(diff, w, N_POS) > 1e-3f, "%s: the sliding window of %u changes nothing "
          "(largest difference %g)", f->name, w, max_over(diff, w, N_POS));
}

/* Both exports tokenize like SmolLM2: Digits puts every digit in a piece
 * of its own (so the merges "1 2" and " 1" never apply, and a space before
 * a digit ends its stretch, where GPT-2's \s+(?!\S) takes it alone), then
 * the GPT-2 regex and the merges. Ids worked out by hand from those rules. */
static void check_smol_ids(const struct family *f, const struct model *hf, const struct model *gg)
{
    enum { T = SMOL_MERGED + 2, AB = SMOL_MERGED + 5, S = SMOL_MERGED + 7,
           SP = SMOL_BYTE + ' ' }; /* " the", "ab", "'s", " " */
#define B(c) (SMOL_BYTE + (c))
    static const struct {
        const char *text;
        int32_t ids[8];
        int n;
    } cases[] = {
        {"12 the", {B('1'), B('2'), T}, 3},
        {" the 12 1", {T, SP, B('1'), B('2'), SP, B('1')}, 6},
        {"ab 1ab's", {AB, SP, B('1'), AB, S}, 5},
        {"x 123", {B('x'), SP, B('1'), B('2'), B('3')}, 5},
    };
#undef B
    CHECK(hf->tok.hdr.pre_tokenizer == HEARTH_PRE_SMOLLM &&
          gg->tok.hdr.pre_tokenizer == HEARTH_PRE_SMOLLM &&
          hf->tok.hdr.flags == gg->tok.hdr.flags &&
          !(hf->tok.hdr.flags & (HEARTH_TOK_NFC | HEARTH_TOK_IGNORE_MERGES)) &&
          hf->tok.hdr.n_tokens == SMOL_N_TOKENS,
          "%s: pre-tokenizers %u/%u, flags 0x%x/0x%x, %u tokens", f->name,
          hf->tok.hdr.pre_tokenizer, gg->tok.hdr.pre_tokenizer, hf->tok.hdr.flags,
          gg->tok.hdr.flags, hf->tok.hdr.n_tokens);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t a[64], b[64];
        char err[HEARTH_ERR_BYTES] = "";
        size_t n = strlen(cases[i].text);
        int na = tokenizer_encode(&hf->tok, cases[i].text, n, 0, a, 64, err);
        int nb = tokenizer_encode(&gg->tok, cases[i].text, n, 0, b, 64, err);
        CHECK(na == cases[i].n && !memcmp(a, cases[i].ids, (size_t)na * sizeof *a),
              "%s: HF export encodes \"%s\" into %d ids, not the expected %d %s", f->name,
              cases[i].text, na, cases[i].n, err);
        CHECK(nb == na && na >= 0 && !memcmp(a, b, (size_t)na * sizeof *a),
              "%s: \"%s\": GGUF export gives %d ids, HF export %d", f->name, cases[i].text, nb,
              na);
    }
}

static void compare_exports(const struct family *f, const char *hf_out, const char *gguf_out)
{
    struct model hf, gg;
    char err[HEARTH_ERR_BYTES];
    if (model_open(&hf, hf_out, err) < 0) {
        CHECK(0, "%s: open %s: %s", f->name, hf_out, err);
        return;
    }
    if (model_open(&gg, gguf_out, err) < 0) {
        CHECK(0, "%s: open %s: %s", f->name, gguf_out, err);
        model_close(&hf);
        return;
    }
    check_header(f, &hf.cfg);
    if (hf.cfg.sliding_window && hf.cfg.sliding_window < N_POS) {
        /* llama.cpp's GGUF of a Mistral model has no window key and gguf.c
         * reads none: check it matters, then run the GGUF model with it. */
        CHECK(gg.cfg.sliding_window == 0, "%s: GGUF export has window %u", f->name,
              gg.cfg.sliding_window);
        check_window_matters(f, &hf, &gg);
        gg.cfg.sliding_window = hf.cfg.sliding_window;
    }
    float diff[N_POS];
    if (logit_diffs(&hf, &gg, diff) == 0)
        CHECK(max_over(diff, 0, N_POS) <= 1e-5f, "%s: HF and GGUF exports' logits differ by %g",
              f->name, max_over(diff, 0, N_POS));
    if (f->smol_vocab)
        check_smol_ids(f, &hf, &gg);
    model_close(&hf);
    model_close(&gg);
}

static void check_family(const struct family *f)
{
    struct vocab v = {0};
    char err[HEARTH_ERR_BYTES], name[96];
    if (!f->smol_vocab && vocab_read_spm_model(TOK512, &v, err) < 0) {
        CHECK(0, "%s: %s", TOK512, err);
        return;
    }
    struct synth_config cfg = f->cfg;
    cfg.vocab_size = f->smol_vocab ? (int)SMOL_N_TOKENS : (int)v.hdr.n_tokens;
    struct synth_model *sm = synth_create(&cfg, 0);
    char *dir = test_path(f->name);
    snprintf(name, sizeof name, "%s.gguf", f->name);
    char *gguf = test_path(name);
    snprintf(name, sizeof name, "%s.hf.hearth", f->name);
    char *hf_out = test_path(name);
    snprintf(name, sizeof name, "%s.gguf.hearth", f->name);
    char *gguf_out = test_path(name);
    int ok = sm && synth_set_variant(sm, &f->var) == 0 &&
             synth_write_hf(sm, dir, "F32", 1, f->smol_vocab ? NULL : TOK512) == 0 &&
             (!f->smol_vocab || write_smol_json(dir) == 0) &&
             write_gguf(sm, f->gguf_arch, f->smol_vocab ? NULL : &v, gguf) == 0;
    CHECK(ok, "%s: writing the HF folder or the GGUF file failed", f->name);
    if (ok && export_f32(dir, hf_out) == 0 && export_f32(gguf, gguf_out) == 0)
        compare_exports(f, hf_out, gguf_out);
    synth_free(sm);
    if (!f->smol_vocab)
        vocab_free(&v);
    free(dir);
    free(gguf);
    free(hf_out);
    free(gguf_out);
}

/* ---- the families -------------------------------------------------------------
 * Tiny shapes with each family's features; head_dim 16 with theta 500000
 * puts Llama 3's rotary pairs in all three regions of its scaling (below,
 * inside and above the smoothed band of Meta's low 1, high 4, 8192). */

static void test_families_llama32(void)
{
    static const struct family f = {
        "llama32", "llama",
        {.dim = 64, .hidden_dim = 160, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
         .seq_len = 128, .tied = 1, .rope_theta = 500000.0f, .norm_eps = 1e-5f, .seed = 101},
        {.rope_factor = 32.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
         .rope_orig_max_seq_len = 8192},
        0,
    };
    check_family(&f);
}

static void test_families_llama31(void)
{
    static const struct family f = {
        "llama31", "llama",
        {.dim = 64, .hidden_dim = 224, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1,
         .seq_len = 128, .tied = 0, .rope_theta = 500000.0f, .norm_eps = 1e-5f, .seed = 102},
        {.rope_factor = 8.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
         .rope_orig_max_seq_len = 8192},
        0,
    };
    check_family(&f);
}

static void test_families_mistral(void)
{
    static const struct family f = {
        "mistral", "llama",
        {.dim = 64, .hidden_dim = 224, .n_layers = 2, .n_heads = 4, .n_kv_heads = 1,
         .seq_len = 128, .tied = 0, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 103},
        {.architecture = "MistralForCausalLM", .sliding_window = 16},
        0,
    };
    check_family(&f);
}

static void test_families_tinyllama(void)
{
    static const struct family f = {
        "tinyllama", "llama",
        {.dim = 256, .hidden_dim = 704, .n_layers = 2, .n_heads = 32, .n_kv_heads = 4,
         .seq_len = 128, .tied = 0, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 104},
        {0},
        0,
    };
    check_family(&f);
}

static void test_families_qwen25(void)
{
    /* sliding_window is set but use_sliding_window false, as in Qwen2.5's
     * configs: it must not limit attention. */
    static const struct family f = {
        "qwen25", "qwen2",
        {.dim = 64, .hidden_dim = 160, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
         .seq_len = 128, .tied = 1, .rope_theta = 1000000.0f, .norm_eps = 1e-6f, .seed = 105},
        {.architecture = "Qwen2ForCausalLM", .qkv_bias = 1, .sliding_window = 8},
        0,
    };
    check_family(&f);
}

/* SmolLM2-135M's shape (config.json: LlamaForCausalLM, hidden_size 576,
 * intermediate_size 1536, 30 layers, 9 heads, 3 kv heads, head_dim 64,
 * rope_theta 100000, rms_norm_eps 1e-5, tie_word_embeddings true) at a
 * tiny size: 9 heads of 32, 3 kv heads, the same 8/3 FFN ratio. */
static void test_families_smollm2(void)
{
    static const struct family f = {
        "smollm2", "llama",
        {.dim = 288, .hidden_dim = 768, .n_layers = 2, .n_heads = 9, .n_kv_heads = 3,
         .seq_len = 128, .tied = 1, .rope_theta = 100000.0f, .norm_eps = 1e-5f, .seed = 107},
        {0},
        1,
    };
    check_family(&f);
}

/* ---- config.json rules of the families --------------------------------------- */

/* hf_read of folder dir with the config.json line holding `key` replaced by
 * `line` ("" drops it); config.json is restored afterwards. Returns
 * hf_read's status and fills *h on success. */
static int read_edited(const char *dir, const char *key, const char *line,
                       struct hearth_header *h, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t n, len = 0;
    char *text = test_read_file(path, &n), *edited = NULL;
    char *at = text ? strstr(text, key) : NULL;
    if (!at) {
        free(text);
        return fail(err, "%s: no line with %s", path, key);
    }
    char *start = at, *end = strchr(at, '\n');
    while (start > text && start[-1] != '\n')
        start--;
    FILE *f = open_memstream(&edited, &len);
    if (!f) {
        free(text);
        return fail(err, "out of memory");
    }
    fprintf(f, "%.*s%s%s", (int)(start - text), text, line, end ? end + 1 : "");
    fclose(f);
    struct source src;
    int rc = test_write_file(path, edited, len) == 0 ? hf_read(dir, &src, err)
                                                    : fail(err, "cannot write %s", path);
    if (rc == 0) {
        *h = src.cfg;
        source_free(&src);
    }
    test_write_file(path, text, n);
    free(edited);
    free(text);
    return rc;
}

/* Mistral's window: transformers' default 4096 when the key is absent,
 * none when null. Qwen2: use_sliding_window true (a window from layer
 * max_window_layers on) is refused by name. model_type must match. */
static void test_families_config_rules(void)
{
    struct synth_config cfg = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4,
                               .n_kv_heads = 2, .vocab_size = 512, .seq_len = 128, .tied = 1,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f, .seed = 106};
    struct synth_variant mistral = {.architecture = "MistralForCausalLM", .sliding_window = 16};
    struct synth_variant qwen2 = {.architecture = "Qwen2ForCausalLM", .qkv_bias = 1};
    struct synth_model *sm = synth_create(&cfg, 0);
    char *dm = test_path("rules-mistral"), *dq = test_path("rules-qwen2");
    char err[HEARTH_ERR_BYTES] = "";
    struct hearth_header h;
    int ok = sm && synth_set_variant(sm, &mistral) == 0 &&
             synth_write_hf(sm, dm, "F32", 1, TOK512) == 0 &&
             synth_set_variant(sm, &qwen2) == 0 && synth_write_hf(sm, dq, "F32", 1, TOK512) == 0;
    CHECK(ok, "writing the folders failed");
    if (ok) {
        int rc = read_edited(dm, "\"sliding_window\"", "", &h, err);
        CHECK(rc == 0 && h.sliding_window == 4096, "mistral, no sliding_window: rc %d window %u "
              "(%s)", rc, rc == 0 ? h.sliding_window : 0, err);
        rc = read_edited(dm, "\"sliding_window\"", "  \"sliding_window\": null,", &h, err);
        CHECK(rc == 0 && h.sliding_window == 0, "mistral, sliding_window null: rc %d window %u "
              "(%s)", rc, rc == 0 ? h.sliding_window : 0, err);
        rc = read_edited(dq, "\"use_sliding_window\"", "  \"use_sliding_window\": true,", &h, err);
        CHECK(rc < 0 && strstr(err, "use_sliding_window"), "qwen2 use_sliding_window true: %s",
              rc < 0 ? err : "accepted");
        rc = read_edited(dq, "\"model_type\"", "  \"model_type\": \"llama\",", &h, err);
        CHECK(rc < 0 && strstr(err, "model_type") && strstr(err, "Qwen2ForCausalLM"),
              "Qwen2ForCausalLM with model_type llama: %s", rc < 0 ? err : "accepted");
        rc = read_edited(dq, "\"architectures\"", "  \"architectures\": [\"Phi3ForCausalLM\"],",
                         &h, err);
        CHECK(rc < 0 && strstr(err, "Phi3ForCausalLM") && strstr(err, "MistralForCausalLM"),
              "Phi3ForCausalLM: %s", rc < 0 ? err : "accepted");
    }
    synth_free(sm);
    free(dm);
    free(dq);
}

const struct test_case families_tests[] = {
    {"families_llama32_tied_rope_scaling", test_families_llama32},
    {"families_llama31_untied_rope_scaling", test_families_llama31},
    {"families_mistral_sliding_window", test_families_mistral},
    {"families_tinyllama_gqa", test_families_tinyllama},
    {"families_qwen25_biases_tied", test_families_qwen25},
    {"families_smollm2_byte_level_digits", test_families_smollm2},
    {"families_config_rules", test_families_config_rules},
    {NULL, NULL},
};
