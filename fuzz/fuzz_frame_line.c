/* libFuzzer target for the line framer (see fuzz_frame.h). */
#define FRAME_KIND SK_FRAME_LINE
#include "fuzz_frame.h"
