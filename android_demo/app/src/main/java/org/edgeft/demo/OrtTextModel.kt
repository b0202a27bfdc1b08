package org.edgeft.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.extensions.OrtxPackage
import org.edgeft.demo.core.ModelBundle
import org.edgeft.demo.core.TextModel

/**
 * ONNX Runtime behind core's [TextModel]: the bundle's string-in model (tokenizer inside the graph),
 * with onnxruntime-extensions' custom ops registered so that its BertTokenizer node can run.
 *
 * The model bytes come from [ModelBundle.readTextModel], which checked their sha256 first.
 */
class OrtTextModel(private val bundle: ModelBundle) : TextModel {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()

    // Kept open for the session's lifetime: it holds the registered custom-op library.
    private val options = OrtSession.SessionOptions().apply {
        registerCustomOpLibrary(OrtxPackage.getLibraryPath())
        if (bundle.threads > 0) setIntraOpNumThreads(bundle.threads) // android-arm64 target: 2 big cores
    }
    private val session: OrtSession = env.createSession(bundle.readTextModel(), options)

    override fun run(normalizedText: String): TextModel.Output {
        // One string, shape (1,): the op reads two strings as a sentence pair.
        OnnxTensor.createTensor(env, arrayOf(normalizedText), longArrayOf(1)).use { text ->
            session.run(mapOf(bundle.textInput to text), setOf(bundle.logitsOutput, bundle.tokenIdsOutput)).use { out ->
                @Suppress("UNCHECKED_CAST")
                val logits = (out.get(bundle.logitsOutput).get().value as Array<FloatArray>)[0] // (1, labels)
                val ids = out.get(bundle.tokenIdsOutput).get().value as LongArray // (tokens,)
                return TextModel.Output(logits, ids.size)
            }
        }
    }

    override fun close() {
        session.close()
        options.close()
    }
}
