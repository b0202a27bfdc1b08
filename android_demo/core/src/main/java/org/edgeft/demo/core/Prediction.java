package org.edgeft.demo.core;

import java.util.Locale;

/** One classified text: the label, its probability, every probability, and what it cost. */
public final class Prediction {
    public final String label;
    public final double score;
    public final double[] probabilities; // in the bundle's label order
    public final int tokens;             // including [CLS] and [SEP]
    public final boolean truncated;      // tokens reached max_length: the text was (probably) cut there
    public final double latencyMs;       // normalize + model call, wall clock

    public Prediction(String label, double score, double[] probabilities, int tokens, boolean truncated,
                      double latencyMs) {
        this.label = label;
        this.score = score;
        this.probabilities = probabilities;
        this.tokens = tokens;
        this.truncated = truncated;
        this.latencyMs = latencyMs;
    }

    /** For the screen: "positive 0.973 — 12 tokens, 3.4 ms". */
    public String summary() {
        return String.format(Locale.ROOT, "%s %.3f — %d tokens%s, %.1f ms", label, score, tokens,
                truncated ? " (truncated)" : "", latencyMs);
    }
}
