package org.edgeft.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assume.assumeNotNull;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.HashMap;
import java.util.Map;

import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Before;
import org.junit.Test;

/**
 * The core on assets that edgeft (Python) wrote, with the model call replayed from Python's run of
 * the same text model: everything the phone does except ONNX Runtime itself.
 *
 * <p>Needs {@code -Dedgeft.bundle=DIR -Dedgeft.cases=FILE} (tests/test_android_core.py passes them);
 * skipped without.
 */
public class RealBundleTest {
    private File dir;
    private JSONArray cases;

    @Before
    public void locate() throws Exception {
        String bundle = System.getProperty("edgeft.bundle");
        String casesFile = System.getProperty("edgeft.cases");
        assumeNotNull(bundle, casesFile);
        dir = new File(bundle);
        cases = new JSONArray(new String(Files.readAllBytes(new File(casesFile).toPath()), StandardCharsets.UTF_8));
    }

    @Test
    public void everyListedFileOfThePythonWrittenAssetsVerifies() throws Exception {
        ModelBundle b = ModelBundle.open(AssetSource.folder(dir));
        for (String name : new String[]{"model.onnx", "model.ort", "tokenizer.json", "labels.txt", b.textModel}) {
            assertNotNull(name, b.read(name));
        }
    }

    /** Java's normalization must produce Python's text exactly: the replayed model only knows those. */
    @Test
    public void labelsAndProbabilitiesEqualPythons() throws Exception {
        ModelBundle b = ModelBundle.open(AssetSource.folder(dir));
        Map<String, JSONObject> byText = new HashMap<>();
        for (int i = 0; i < cases.length(); i++) {
            byText.put(cases.getJSONObject(i).getString("normalized"), cases.getJSONObject(i));
        }
        TextModel replay = new TextModel() {
            @Override
            public Output run(String normalizedText) throws Exception {
                JSONObject c = byText.get(normalizedText);
                if (c == null) {
                    throw new AssertionError("Python never normalized a text to " + JSONObject.quote(normalizedText));
                }
                JSONArray logits = c.getJSONArray("logits");
                float[] out = new float[logits.length()];
                for (int i = 0; i < out.length; i++) {
                    out[i] = (float) logits.getDouble(i);
                }
                return new Output(out, c.getInt("tokens"));
            }

            @Override
            public void close() {
            }
        };
        Classifier classifier = new Classifier(b, replay);
        for (int i = 0; i < cases.length(); i++) {
            JSONObject c = cases.getJSONObject(i);
            Prediction p = classifier.classify(c.getString("text"));
            assertEquals(c.getString("text"), c.getString("label"), p.label);
            JSONArray probs = c.getJSONArray("probabilities");
            for (int k = 0; k < probs.length(); k++) {
                assertEquals(c.getString("text"), probs.getDouble(k), p.probabilities[k], 1e-6);
            }
            assertEquals(c.getInt("tokens") >= b.maxLength, p.truncated);
        }
    }
}
