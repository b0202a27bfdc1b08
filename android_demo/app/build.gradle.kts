plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.edgeft.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.edgeft.demo"
        minSdk = 24 // ONNX Runtime's Android package needs API 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64") // phones, and the emulator on x86 machines
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    androidResources {
        // Models are read whole into memory; storing them uncompressed keeps the APK's reads cheap.
        noCompress += listOf("onnx", "ort")
    }
}

dependencies {
    implementation(project(":core"))
    // ONNX Runtime (full package: runs .onnx and .ort models) and the onnxruntime-extensions ops that the
    // string-in model's tokenizer (BertTokenizer) needs. Parity of that op was checked with the
    // onnxruntime-extensions Python package 0.13.0, the version of this Android package.
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.27.0")
    implementation("com.microsoft.onnxruntime:onnxruntime-extensions-android:0.13.0")
}
