package org.edgeft.demo

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.TextView
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import org.edgeft.demo.core.AssetSource
import org.edgeft.demo.core.Classifier
import org.edgeft.demo.core.ModelBundle

/**
 * One screen: type a text, get label + score + latency; a button times [RUNS] calls (p50/p90).
 *
 * Deliberately thin: reading and verifying the bundle, normalization, softmax, label mapping and
 * latency statistics live in `core` (plain Java, unit-tested on the JVM); ONNX Runtime sits behind
 * core's TextModel interface in [OrtTextModel]. Model calls run on one background thread, never on
 * the UI thread.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    @Volatile private var classifier: Classifier? = null
    private lateinit var result: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val input = findViewById<EditText>(R.id.input)
        val classify = findViewById<Button>(R.id.classify)
        val benchmark = findViewById<Button>(R.id.benchmark)
        result = findViewById(R.id.result)
        benchmark.text = getString(R.string.benchmark, RUNS)
        classify.isEnabled = false
        benchmark.isEnabled = false
        show(getString(R.string.loading))

        worker.execute {
            try {
                val bundle = ModelBundle.open(AssetSource { name -> assets.open("$ASSET_DIR/$name") })
                classifier = Classifier(bundle, OrtTextModel(bundle))
                show(getString(R.string.ready, bundle.labels.size, bundle.labels.joinToString(), bundle.maxLength))
                runOnUiThread {
                    classify.isEnabled = true
                    benchmark.isEnabled = true
                }
            } catch (e: Exception) {
                show(getString(R.string.load_failed, e.message ?: e.toString()))
            }
        }
        classify.setOnClickListener {
            val text = input.text.toString()
            runInBackground { it.classify(text).summary() }
        }
        benchmark.setOnClickListener {
            val text = input.text.toString()
            runInBackground { it.benchmark(text, RUNS, WARMUP).summary() }
        }
    }

    private fun runInBackground(job: (Classifier) -> String) {
        val c = classifier ?: return
        show(getString(R.string.running))
        worker.execute {
            show(try {
                job(c)
            } catch (e: Exception) {
                getString(R.string.failed, e.message ?: e.toString())
            })
        }
    }

    private fun show(text: String) = runOnUiThread { result.text = text }

    override fun onDestroy() {
        worker.execute { classifier?.close() } // after any call still running
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        const val ASSET_DIR = "bundle" // app/src/main/assets/bundle/: edgeft.json, text_model.onnx, …
        const val RUNS = 100
        const val WARMUP = 10
    }
}
