package org.edgeft.demo.core;

import java.text.Normalizer;
import java.util.Locale;

/**
 * Normalizes a text the way Hugging Face's BertNormalizer does, before the in-graph tokenizer sees it.
 *
 * <p>Why: onnxruntime-extensions' BertTokenizer lowercases few scripts, strips only some combining
 * marks, treats only ASCII punctuation as punctuation and stops at a NUL byte. Doing these steps
 * here, with java.text.Normalizer and Character's Unicode tables, makes the in-graph ids equal the
 * HF ids on 301 of 303 test sentences instead of 282 (android_demo/README.md). The steps mirror
 * {@code edgeft.compress.android_assets.app_text}; a test compares the two on those sentences.
 */
public final class TextNormalizer {
    private TextNormalizer() {
    }

    public static String normalize(String text, Normalization n) {
        if (n.clipChars > 0 && text.codePointCount(0, text.length()) > n.clipChars) {
            text = clip(text, n.clipChars);
        }
        if (n.cleanText) {
            text = clean(text);
        }
        if (n.stripAccents) {
            text = stripAccents(text);
        }
        if (n.lowercase) {
            text = text.toLowerCase(Locale.ROOT);
        }
        if (n.splitPunctuation) {
            text = splitPunctuation(text);
        }
        return text;
    }

    /** Drops NUL, U+FFFD and every "other" character (Cc, Cf, Cs, Co, Cn) except tab, LF and CR. */
    static String clean(String text) {
        StringBuilder out = new StringBuilder(text.length());
        text.codePoints().forEach(c -> {
            if (c == '\t' || c == '\n' || c == '\r' || !(c == 0 || c == 0xFFFD || isOther(c))) {
                out.appendCodePoint(c);
            }
        });
        return out.toString();
    }

    static String stripAccents(String text) {
        StringBuilder out = new StringBuilder(text.length());
        Normalizer.normalize(text, Normalizer.Form.NFD).codePoints().forEach(c -> {
            if (Character.getType(c) != Character.NON_SPACING_MARK) {
                out.appendCodePoint(c);
            }
        });
        return out.toString();
    }

    static String splitPunctuation(String text) {
        StringBuilder out = new StringBuilder(text.length() + 8);
        text.codePoints().forEach(c -> {
            if (c > 127 && isPunctuation(c)) {
                out.append(' ').appendCodePoint(c).append(' ');
            } else {
                out.appendCodePoint(c);
            }
        });
        return out.toString();
    }

    /** The runtime's rule: cut at the last whitespace in the final 4,096 characters before {@code limit}. */
    static String clip(String text, int limit) {
        int[] cps = text.codePoints().toArray();
        for (int cut = limit; cut > Math.max(0, limit - 4096); cut--) {
            if (isSpace(cps[cut - 1])) {
                return new String(cps, 0, cut - 1);
            }
        }
        return new String(cps, 0, limit);
    }

    /** Python's str.isspace: Java's whitespace, the Unicode space separators, and NEL. */
    static boolean isSpace(int c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == 0x85;
    }

    static boolean isOther(int c) {
        int t = Character.getType(c);
        return t == Character.CONTROL || t == Character.FORMAT || t == Character.SURROGATE
                || t == Character.PRIVATE_USE || t == Character.UNASSIGNED;
    }

    static boolean isPunctuation(int c) {
        switch (Character.getType(c)) {
            case Character.CONNECTOR_PUNCTUATION:
            case Character.DASH_PUNCTUATION:
            case Character.START_PUNCTUATION:
            case Character.END_PUNCTUATION:
            case Character.INITIAL_QUOTE_PUNCTUATION:
            case Character.FINAL_QUOTE_PUNCTUATION:
            case Character.OTHER_PUNCTUATION:
                return true;
            default:
                return false;
        }
    }
}
