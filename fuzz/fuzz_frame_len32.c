/* libFuzzer target for the 4-byte length-prefix framer (see fuzz_frame.h). */
#define FRAME_KIND SK_FRAME_LEN32
#include "fuzz_frame.h"
