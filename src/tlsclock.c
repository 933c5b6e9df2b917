/*
 * tlsclock: the millisecond clock mbedTLS ages TLS 1.3 tickets with.
 *
 * The bundled mbedTLS is built with MBEDTLS_PLATFORM_MS_TIME_ALT
 * (scripts/mbedtls-user-config.h) and calls this instead of its own
 * CLOCK_BOOTTIME clock.  A ticket's creation time travels inside the ticket;
 * on the wall clock, every host that shares ticket_key_file and keeps its
 * clock synchronised (NTP) agrees on a ticket's age, whatever its boot time.
 * A system mbedTLS without the option keeps its boot-time clock: TLS 1.3
 * tickets then resume only on the host that issued them (TLS 1.2 tickets
 * carry no such age and resume anywhere).
 */
#include <mbedtls/build_info.h>

#if defined(MBEDTLS_PLATFORM_MS_TIME_ALT)
#include <time.h>

#include <mbedtls/platform_time.h>

mbedtls_ms_time_t
mbedtls_ms_time(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (mbedtls_ms_time_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int tlsclock_unused;
#endif
