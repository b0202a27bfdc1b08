package org.edgeft.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import org.junit.Test;

/** Percentiles as numpy.percentile computes them (linear interpolation), so phone and laptop numbers compare. */
public class LatencyStatsTest {
    @Test
    public void percentilesInterpolateLikeNumpy() {
        LatencyStats s = new LatencyStats(new double[]{10, 1, 9, 2, 8, 3, 7, 4, 6, 5});
        assertEquals(5.5, s.p50, 1e-12);   // numpy.percentile(range(1, 11), 50)
        assertEquals(9.1, s.p90, 1e-12);   // numpy.percentile(range(1, 11), 90)
        assertEquals(5.5, s.mean, 1e-12);
        assertEquals(1.0, s.min, 0);
        assertEquals(10.0, s.max, 0);
        assertEquals(10, s.count);
    }

    @Test
    public void oneValueIsEveryPercentile() {
        LatencyStats s = new LatencyStats(new double[]{3.25});
        assertEquals(3.25, s.p50, 0);
        assertEquals(3.25, s.p90, 0);
    }

    @Test
    public void theCallersArrayIsNotReordered() {
        double[] ms = {3, 1, 2};
        new LatencyStats(ms);
        assertArrayEquals(new double[]{3, 1, 2}, ms, 0);
    }

    @Test
    public void summaryIsOneReadableLine() {
        assertEquals("4 calls: p50 2.50 ms, p90 3.70 ms (mean 2.50, max 4.00)",
                new LatencyStats(new double[]{1, 2, 3, 4}).summary());
    }

    @Test
    public void noLatenciesIsAnError() {
        assertThrows(IllegalArgumentException.class, () -> new LatencyStats(new double[0]));
    }
}
