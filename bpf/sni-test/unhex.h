// SPDX-License-Identifier: Apache-2.0
/* Hex text to bytes, shared by the userspace harnesses (sni_check, sni_run). */
#ifndef SNI_TEST_UNHEX_H
#define SNI_TEST_UNHEX_H

#include <stdio.h>
#include <string.h>

/* Returns the number of bytes written, or -1 for an odd length, more than cap bytes or a non-hex digit. */
static int unhex(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = strlen(hex), i;

	if (n % 2 || n / 2 > cap)
		return -1;
	for (i = 0; i < n / 2; i++) {
		unsigned int v;

		if (sscanf(&hex[i * 2], "%2x", &v) != 1)
			return -1;
		out[i] = v;
	}
	return n / 2;
}

#endif
