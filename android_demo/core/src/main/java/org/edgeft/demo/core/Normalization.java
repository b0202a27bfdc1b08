package org.edgeft.demo.core;

/** The text normalization the bundle asks for: edgeft.json, {@code android.normalization}. */
public final class Normalization {
    public final boolean cleanText;        // drop NUL, U+FFFD, control and format characters
    public final boolean stripAccents;     // NFD, then drop combining marks
    public final boolean lowercase;
    public final boolean splitPunctuation; // spaces around non-ASCII punctuation
    public final int clipChars;            // cut longer texts at a whitespace; 0 = never

    public Normalization(boolean cleanText, boolean stripAccents, boolean lowercase, boolean splitPunctuation,
                         int clipChars) {
        this.cleanText = cleanText;
        this.stripAccents = stripAccents;
        this.lowercase = lowercase;
        this.splitPunctuation = splitPunctuation;
        this.clipChars = clipChars;
    }
}
