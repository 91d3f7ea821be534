/* Loads the packed JNI library the way the JVM's System.load does (dlopen, RTLD_NOW: every symbol
 * resolved against this machine's glibc) and runs one native entry point. bin/check-package builds
 * it for each packed platform and runs it natively or under qemu-user. */
#include <dlfcn.h>
#include <stdio.h>

typedef long long (*live_handles_fn)(void *env, void *cls);

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s libsalesforce_sink_jni.so\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 1;
    }
    /* Needs no JNIEnv unless it fails: it reads the live-sink counter of the Rust core. */
    live_handles_fn live = (live_handles_fn)dlsym(lib, "Java_io_axual_connect_plugins_salesforce_jni_NativeSink_liveHandles");
    if (!live) {
        fprintf(stderr, "dlsym failed: %s\n", dlerror());
        return 1;
    }
    long long n = live(NULL, NULL);
    printf("loaded %s, liveHandles() = %lld\n", argv[1], n);
    return n == 0 ? 0 : 1;
}
