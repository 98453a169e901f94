/* api — review offers (filled in below). */
#include "api/internal.h"
