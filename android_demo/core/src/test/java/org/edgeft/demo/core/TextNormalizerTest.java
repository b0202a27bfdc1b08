package org.edgeft.demo.core;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

/** What the app feeds the in-graph tokenizer, for an uncased (MiniLM-like) and a cased tokenizer. */
public class TextNormalizerTest {
    static final Normalization UNCASED = new Normalization(true, true, true, true, 0);
    static final Normalization CASED = new Normalization(true, false, false, true, 0);

    static String uncased(String s) {
        return TextNormalizer.normalize(s, UNCASED);
    }

    @Test
    public void accentsAreStrippedAndTextLowercasedForUncasedModels() {
        assertEquals("cafe in zurich", uncased("Café in Zürich"));
        assertEquals("cafe", uncased("cafe\u0301"));          // combining acute, already decomposed
        assertEquals("istanbul", uncased("İstanbul"));          // dotted capital I: NFD, then lowercase
        assertEquals("αβγδ", uncased("ΑΒΓΔ"));                  // Greek capitals, which the op leaves alone
        assertEquals("łodz", uncased("Łódź"));                  // Ł has no decomposition: lowercased only
    }

    @Test
    public void casedModelsKeepCaseAndAccents() {
        assertEquals("Café in Zürich", TextNormalizer.normalize("Café in Zürich", CASED));
    }

    @Test
    public void controlCharactersAreDroppedButTabsAndNewlinesKept() {
        assertEquals("controlcharnull", uncased("control\u0007char\u0000null"));  // the op stops at NUL
        assertEquals("bom", uncased("\uFEFFbom"));                               // format character
        assertEquals("replacement  char", uncased("replacement \uFFFD char"));
        assertEquals("a\tb\nc\r\nd", uncased("a\tb\nc\r\nd"));
    }

    @Test
    public void nonAsciiPunctuationIsSplitOffAsciiIsLeftToTheTokenizer() {
        assertEquals(" ¿ que?", uncased("¿Qué?"));
        assertEquals("a — b", uncased("a—b"));
        assertEquals("ह ।  ok, fine.", uncased("है। ok, fine."));  // danda split off; the vowel sign is a mark
    }

    @Test
    public void emojiAndSupplementaryCharactersSurvive() {
        assertEquals("i ❤ this 👍", uncased("I ❤\uFE0F this 👍"));  // the variation selector is a mark (Mn)
        assertEquals("𝐁", TextNormalizer.normalize("𝐁", CASED));      // surrogate pair kept whole
    }

    @Test
    public void longTextsAreClippedAtAWhitespaceCountingCodePoints() {
        Normalization clip = new Normalization(false, false, false, false, 10);
        assertEquals("aaaa bbbb", TextNormalizer.normalize("aaaa bbbb cccc", clip));
        assertEquals("aaaaaaaaaa", TextNormalizer.normalize("aaaaaaaaaaaaaa", clip));       // no space: hard cut
        assertEquals("😀😀😀😀 😀😀", TextNormalizer.normalize("😀😀😀😀 😀😀 😀😀😀", clip)); // 10 code points, not chars
        assertEquals("short", TextNormalizer.normalize("short", clip));
    }

    @Test
    public void emptyAndBlankTextsStayEmptyOrBlank() {
        assertEquals("", uncased(""));
        assertEquals(" \t\n", uncased(" \t\n"));
    }
}
