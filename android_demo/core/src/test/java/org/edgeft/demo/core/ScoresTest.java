package org.edgeft.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import org.junit.Test;

public class ScoresTest {
    @Test
    public void softmaxMatchesTheClosedForm() {
        assertArrayEquals(new double[]{0.25, 0.75}, Scores.softmax(new float[]{0f, (float) Math.log(3)}), 1e-7);
        assertArrayEquals(new double[]{1 / 3.0, 1 / 3.0, 1 / 3.0}, Scores.softmax(new float[]{2f, 2f, 2f}), 1e-12);
    }

    @Test
    public void softmaxDoesNotOverflowOnLargeLogits() {
        double[] p = Scores.softmax(new float[]{1000f, 1000f, -1000f});
        assertArrayEquals(new double[]{0.5, 0.5, 0.0}, p, 1e-12);
    }

    @Test
    public void argmaxTakesTheFirstOfEqualValues() {
        assertEquals(1, Scores.argmax(new double[]{0.1, 0.6, 0.3}));
        assertEquals(0, Scores.argmax(new double[]{0.5, 0.5}));
    }

    @Test
    public void noLogitsIsAnError() {
        assertThrows(IllegalArgumentException.class, () -> Scores.softmax(new float[0]));
    }
}
