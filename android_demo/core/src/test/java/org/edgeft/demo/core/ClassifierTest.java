package org.edgeft.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;

import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The Classifier with a fake model and a fake clock: label mapping, normalization, timing, benchmark. */
public class ClassifierTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private ModelBundle bundle;
    private final FakeModel model = new FakeModel();
    private long now = 0;

    /** Returns fixed logits and token count; remembers every text it was given. */
    static final class FakeModel implements TextModel {
        float[] logits = {0f, (float) Math.log(3)};
        int tokens = 7;
        final List<String> seen = new ArrayList<>();
        boolean closed;

        @Override
        public Output run(String normalizedText) {
            seen.add(normalizedText);
            return new Output(logits, tokens);
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    @Before
    public void setUp() throws Exception {
        TestBundles.writeBundle(tmp.getRoot());
        bundle = ModelBundle.open(AssetSource.folder(tmp.getRoot()));
    }

    private Classifier classifier() {
        return new Classifier(bundle, model, () -> now += 2_500_000);  // each reading: 2.5 ms later
    }

    @Test
    public void theLargestLogitGivesTheLabelAndItsProbability() throws Exception {
        Prediction p = classifier().classify("a gripping film");
        assertEquals("positive", p.label);
        assertEquals(0.75, p.score, 1e-7);
        assertArrayEquals(new double[]{0.25, 0.75}, p.probabilities, 1e-7);
        assertEquals(7, p.tokens);
        assertFalse(p.truncated);
        assertEquals(2.5, p.latencyMs, 1e-9);
        assertEquals("positive 0.750 — 7 tokens, 2.5 ms", p.summary());
    }

    @Test
    public void theModelSeesTheNormalizedText() throws Exception {
        classifier().classify("Café IN Zürich!\u0000");
        assertEquals("cafe in zurich!", model.seen.get(0));
    }

    @Test
    public void aTextThatFillsMaxLengthIsFlaggedAsTruncated() throws Exception {
        model.tokens = 64;
        Prediction p = classifier().classify("long");
        assertTrue(p.truncated);
        assertEquals("positive 0.750 — 64 tokens (truncated), 2.5 ms", p.summary());
    }

    @Test
    public void logitsThatDoNotMatchTheLabelsAreABundleError() {
        model.logits = new float[]{1f, 2f, 3f};
        String message = assertThrows(BundleException.class, () -> classifier().classify("x")).getMessage();
        assertEquals("the model returned 3 logits but edgeft.json lists 2 labels; the manifest does not belong to "
                + "this model", message);
    }

    @Test
    public void theBenchmarkTimesOnlyTheMeasuredCalls() throws Exception {
        LatencyStats s = classifier().benchmark("a gripping film", 100, 5);
        assertEquals(105, model.seen.size());
        assertEquals(100, s.count);
        assertEquals(2.5, s.p50, 1e-9);
        assertEquals(2.5, s.p90, 1e-9);
    }

    @Test
    public void aBenchmarkNeedsAtLeastOneRun() {
        assertThrows(IllegalArgumentException.class, () -> classifier().benchmark("x", 0, 0));
    }

    @Test
    public void closingTheClassifierClosesTheModel() {
        classifier().close();
        assertTrue(model.closed);
    }
}
