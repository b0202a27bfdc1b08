package org.edgeft.demo.core;

import static org.hamcrest.CoreMatchers.containsString;
import static org.hamcrest.MatcherAssert.assertThat;
import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.json.JSONObject;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The same refusals as the Python runtime's bundle check, each naming the file and the fix. */
public class ModelBundleTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private File dir;
    private JSONObject manifest;

    @Before
    public void writeBundle() throws Exception {
        dir = tmp.getRoot();
        manifest = TestBundles.writeBundle(dir);
    }

    private ModelBundle open() throws Exception {
        return ModelBundle.open(AssetSource.folder(dir));
    }

    private String refusal() {
        return assertThrows(BundleException.class, this::open).getMessage();
    }

    @Test
    public void readsWhatTheAppNeeds() throws Exception {
        ModelBundle b = open();
        assertEquals(Arrays.asList("negative", "positive"), b.labels);
        assertEquals(64, b.maxLength);
        assertEquals(2, b.threads);
        assertEquals("text", b.textInput);
        assertEquals("logits", b.logitsOutput);
        assertEquals("token_ids", b.tokenIdsOutput);
        assertTrue(b.normalization.lowercase && b.normalization.stripAccents && b.normalization.cleanText);
        assertEquals(2048, b.normalization.clipChars);
        assertArrayEquals("not really a model".getBytes(StandardCharsets.UTF_8), b.readTextModel());
    }

    @Test
    public void batchingIsReadOrInferredAsThePythonRuntimeDoes() throws Exception {
        assertEquals("padded", open().batching); // no field, no quantization: an FP32 bundle
        manifest.put("quantization", new JSONObject().put("mode", "dynamic"));
        TestBundles.saveManifest(dir, manifest);
        assertEquals("rows", open().batching); // written before the field: dynamic INT8 runs one row per call
        manifest.put("batching", "padded");
        TestBundles.saveManifest(dir, manifest);
        assertEquals("padded", open().batching); // a recorded value wins
        manifest.put("batching", "by-length");
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("batching \"by-length\" is not padded or rows; this app is older"));
    }

    @Test
    public void aNewerFormatIsRefusedBeforeAnythingElse() throws Exception {
        manifest.put("format_version", 2).remove("labels");
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("format version 2, but this app reads up to 1"));
    }

    @Test
    public void aBundleWithoutTheAndroidSectionPointsToTheExportFlag() throws Exception {
        manifest.remove("android");
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("--android"));
    }

    @Test
    public void tokenClassificationIsRefused() throws Exception {
        manifest.put("task", "token-classification");
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("classifies whole texts"));
    }

    @Test
    public void aMissingFieldIsNamed() throws Exception {
        manifest.remove("max_length");
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("max_length"));
    }

    @Test
    public void aManifestThatIsNotJsonIsRefused() throws Exception {
        TestBundles.write(dir, ModelBundle.MANIFEST, "{\"format_version\": 1,".getBytes(StandardCharsets.UTF_8));
        assertThat(refusal(), containsString("not valid JSON"));
    }

    @Test
    public void aModifiedModelIsRefusedByItsHash() throws Exception {
        ModelBundle b = open();
        TestBundles.write(dir, "text_model.onnx", "not really a mode!".getBytes(StandardCharsets.UTF_8));  // same size
        String message = assertThrows(BundleException.class, b::readTextModel).getMessage();
        assertThat(message, containsString("text_model.onnx has sha256"));
    }

    @Test
    public void aShortenedModelIsRefusedByItsSize() throws Exception {
        ModelBundle b = open();
        TestBundles.write(dir, "text_model.onnx", "not really".getBytes(StandardCharsets.UTF_8));
        String message = assertThrows(BundleException.class, b::readTextModel).getMessage();
        assertThat(message, containsString("text_model.onnx is 10 bytes but edgeft.json says 18"));
    }

    @Test
    public void onlyListedFilesCanBeRead() throws Exception {
        ModelBundle b = open();
        String message = assertThrows(BundleException.class, () -> b.read("../secret")).getMessage();
        assertThat(message, containsString("not listed"));
    }

    @Test
    public void labelsFileMustAgreeWithTheManifest() throws Exception {
        byte[] other = "neg\npos\n".getBytes(StandardCharsets.UTF_8);
        TestBundles.write(dir, "labels.txt", other);
        manifest.getJSONObject("files").put("labels.txt", TestBundles.digest(other));
        TestBundles.saveManifest(dir, manifest);
        assertThat(refusal(), containsString("labels.txt lists [neg, pos] but edgeft.json says [negative, positive]"));
    }
}
