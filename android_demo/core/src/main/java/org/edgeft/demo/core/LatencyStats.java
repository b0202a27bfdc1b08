package org.edgeft.demo.core;

import java.util.Arrays;
import java.util.Locale;

/** Percentiles of a list of latencies in milliseconds, interpolated as numpy's default (linear). */
public final class LatencyStats {
    public final int count;
    public final double p50;
    public final double p90;
    public final double mean;
    public final double min;
    public final double max;

    public LatencyStats(double[] millis) {
        if (millis.length == 0) {
            throw new IllegalArgumentException("no latencies to summarize");
        }
        double[] sorted = millis.clone();
        Arrays.sort(sorted);
        count = sorted.length;
        p50 = percentile(sorted, 50);
        p90 = percentile(sorted, 90);
        min = sorted[0];
        max = sorted[count - 1];
        double sum = 0;
        for (double x : sorted) {
            sum += x;
        }
        mean = sum / count;
    }

    /** {@code sorted} ascending; rank p/100 × (n − 1), interpolated between its neighbours. */
    static double percentile(double[] sorted, double p) {
        double rank = p / 100.0 * (sorted.length - 1);
        int lo = (int) Math.floor(rank);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
    }

    /** One line for the screen, e.g. "100 calls: p50 3.10 ms, p90 4.20 ms (mean 3.30, max 9.00)". */
    public String summary() {
        return String.format(Locale.ROOT, "%d calls: p50 %.2f ms, p90 %.2f ms (mean %.2f, max %.2f)",
                count, p50, p90, mean, max);
    }
}
