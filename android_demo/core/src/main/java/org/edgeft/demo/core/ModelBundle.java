package org.edgeft.demo.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * An edgeft bundle as the app uses it: edgeft.json read and checked, files verified before use.
 *
 * <p>The same checks as the Python runtime (runtime/bundle.py), in the same order: the manifest
 * parses, its format version is one this app reads, the fields the app needs are there, and each
 * file read has the size and sha256 the manifest records. The bundle must come from
 * {@code edgeft build --target android-arm64} or {@code edgeft export --android}: those add the
 * {@code android} section (the string-in model and how to normalize text for it).
 */
public final class ModelBundle {
    public static final int FORMAT_VERSION = 1; // runtime/manifest.py FORMAT_VERSION
    public static final String MANIFEST = "edgeft.json";

    public final List<String> labels;   // output order
    public final int maxLength;         // tokens, [CLS] and [SEP] included
    public final int threads;           // the target's intra-op threads; 0 = ONNX Runtime's default
    public final String batching;       // "padded" or "rows" (runtime/manifest.py); the app runs one text per call
    public final String textModel;      // file name of the string-in model
    public final String textInput;      // its input name
    public final String logitsOutput;   // its outputs
    public final String tokenIdsOutput;
    public final Normalization normalization;
    private final Map<String, String[]> files; // name → {sha256, size}
    private final AssetSource source;

    private ModelBundle(JSONObject m, AssetSource source) throws JSONException, BundleException {
        this.source = source;
        if (!"text-classification".equals(m.getString("task"))) {
            throw new BundleException(MANIFEST + ": task is " + m.getString("task")
                    + "; this app classifies whole texts (export a text-classification model)");
        }
        JSONArray names = m.getJSONArray("labels");
        List<String> list = new ArrayList<>();
        for (int i = 0; i < names.length(); i++) {
            list.add(names.getString(i));
        }
        if (list.isEmpty()) {
            throw new BundleException(MANIFEST + ": labels is empty");
        }
        labels = Collections.unmodifiableList(list);
        maxLength = m.getInt("max_length");
        JSONObject target = m.optJSONObject("target");
        threads = target == null ? 0 : target.optInt("threads", 0);
        batching = batchingOf(m);
        JSONObject android = m.optJSONObject("android");
        if (android == null) {
            throw new BundleException(MANIFEST + " has no \"android\" section: this bundle has no string-in model. "
                    + "Write the app's assets with `edgeft export MODEL --out B --android DIR` or "
                    + "`edgeft build --target android-arm64` (DIR/android/)");
        }
        textModel = android.getString("text_model");
        textInput = android.getString("text_input");
        logitsOutput = android.getString("logits");
        tokenIdsOutput = android.getString("token_ids");
        JSONObject n = android.getJSONObject("normalization");
        normalization = new Normalization(n.getBoolean("clean_text"), n.getBoolean("strip_accents"),
                n.getBoolean("lowercase"), n.getBoolean("split_punctuation"), n.getInt("clip_chars"));
        files = new HashMap<>();
        JSONObject listed = m.getJSONObject("files");
        for (Iterator<String> it = listed.keys(); it.hasNext(); ) {
            String name = it.next();
            JSONObject entry = listed.getJSONObject(name);
            files.put(name, new String[]{entry.getString("sha256"), String.valueOf(entry.getLong("size"))});
        }
        if (!files.containsKey(textModel)) {
            throw new BundleException(MANIFEST + ": files has no entry for " + textModel);
        }
    }

    /**
     * How the bundle batches texts, as the Python runtime reads it (runtime/session.py batching_of):
     * the manifest's "batching", else, for bundles written before the field, "rows" for dynamic INT8
     * and "padded" otherwise. The app classifies one text per model call, which gives the answers
     * of either (a text's answer never depends on other texts); an unknown value is refused, as a
     * newer format would be.
     */
    static String batchingOf(JSONObject m) throws BundleException {
        String recorded = m.optString("batching", "");
        if (recorded.isEmpty()) {
            JSONObject q = m.optJSONObject("quantization");
            return q != null && "dynamic".equals(q.optString("mode", "")) ? "rows" : "padded";
        }
        if (!"padded".equals(recorded) && !"rows".equals(recorded)) {
            throw new BundleException(MANIFEST + ": batching \"" + recorded + "\" is not padded or rows; this app "
                    + "is older than the bundle: update the app");
        }
        return recorded;
    }

    /** Reads and checks edgeft.json from {@code source}; files are verified when read. */
    public static ModelBundle open(AssetSource source) throws IOException, BundleException {
        String text = new String(source.read(MANIFEST), StandardCharsets.UTF_8);
        JSONObject m;
        try {
            m = new JSONObject(text);
        } catch (JSONException e) {
            throw new BundleException(MANIFEST + " is not valid JSON (" + e.getMessage()
                    + "); the bundle is damaged: copy it again");
        }
        // The version comes first: a newer format may have renamed the other fields.
        int version = m.optInt("format_version", -1);
        if (version < 1) {
            throw new BundleException(MANIFEST + " has no format_version: it is not an edgeft bundle");
        }
        if (version > FORMAT_VERSION) {
            throw new BundleException(MANIFEST + " has format version " + version + ", but this app reads up to "
                    + FORMAT_VERSION + ": update the app, or export the bundle with the edgeft it was built for");
        }
        try {
            ModelBundle bundle = new ModelBundle(m, source);
            bundle.checkLabelsFile(m.getJSONObject("android").optString("labels_file", ""));
            return bundle;
        } catch (JSONException e) {
            throw new BundleException(MANIFEST + " lacks a field or has the wrong type: " + e.getMessage());
        }
    }

    /** The bytes of a listed file, after checking its size and sha256 against the manifest. */
    public byte[] read(String name) throws IOException, BundleException {
        String[] want = files.get(name);
        if (want == null) {
            throw new BundleException(name + " is not listed in " + MANIFEST + "; refusing to read it");
        }
        byte[] data = source.read(name);
        if (data.length != Long.parseLong(want[1])) {
            throw new BundleException(name + " is " + data.length + " bytes but " + MANIFEST + " says " + want[1]
                    + "; the bundle was changed after it was written: copy it again");
        }
        String got = sha256(data);
        if (!got.equals(want[0])) {
            throw new BundleException(name + " has sha256 " + got.substring(0, 16) + "… but " + MANIFEST + " says "
                    + want[0].substring(0, Math.min(16, want[0].length())) + "…; the file was modified");
        }
        return data;
    }

    /** The string-in model, verified. */
    public byte[] readTextModel() throws IOException, BundleException {
        return read(textModel);
    }

    private void checkLabelsFile(String name) throws IOException, BundleException {
        if (name.isEmpty() || !files.containsKey(name)) {
            return;
        }
        String text = new String(read(name), StandardCharsets.UTF_8);
        List<String> lines = new ArrayList<>();
        for (String line : text.split("\n", -1)) {
            if (!line.isEmpty()) {
                lines.add(line);
            }
        }
        if (!lines.equals(labels)) {
            throw new BundleException(name + " lists " + lines + " but " + MANIFEST + " says " + labels);
        }
    }

    static String sha256(byte[] data) {
        try {
            StringBuilder hex = new StringBuilder(64);
            for (byte b : MessageDigest.getInstance("SHA-256").digest(data)) {
                hex.append(String.format("%02x", b & 0xff));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every Java platform", e);
        }
    }
}
