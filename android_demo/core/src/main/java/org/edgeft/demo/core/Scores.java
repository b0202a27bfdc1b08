package org.edgeft.demo.core;

/** Logits to probabilities, and the best label. */
public final class Scores {
    private Scores() {
    }

    /** Softmax in double precision, max-subtracted so large logits do not overflow. */
    public static double[] softmax(float[] logits) {
        if (logits.length == 0) {
            throw new IllegalArgumentException("softmax of no logits");
        }
        double max = Double.NEGATIVE_INFINITY;
        for (float x : logits) {
            max = Math.max(max, x);
        }
        double[] out = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < logits.length; i++) {
            out[i] = Math.exp(logits[i] - max);
            sum += out[i];
        }
        for (int i = 0; i < out.length; i++) {
            out[i] /= sum;
        }
        return out;
    }

    /** Index of the largest value; the first one on ties (as numpy's argmax). */
    public static int argmax(double[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }
}
