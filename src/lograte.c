/*
 * lograte: decide which refusals are logged one by one, and count the rest.
 */
#include "lograte.h"

#include <string.h>

void
lograte_init(struct lograte *lr, unsigned burst)
{
	memset(lr, 0, sizeof(*lr));
	lr->burst = burst;
	memcpy(lr->other.token, LOGRATE_OTHER, sizeof(LOGRATE_OTHER));
}

/* Milliseconds since ${s}'s window started; a clock step back counts 0. */
static uint64_t
elapsed(const struct lograte_slot *s, uint64_t now_ms)
{
	return now_ms > s->start ? now_ms - s->start : 0;
}

/* ${token}'s slot, taken now if it has none; "other" when full. */
static struct lograte_slot *
slot_for(struct lograte *lr, const char *token, uint64_t now_ms)
{
	struct lograte_slot *s;
	size_t len;
	unsigned i;

	if (token == NULL || token[0] == '\0' ||
	    (len = strnlen(token, LOGRATE_TOKEN_MAX)) == LOGRATE_TOKEN_MAX ||
	    strcmp(token, LOGRATE_OTHER) == 0)
		return &lr->other;
	for (i = 0; i < lr->nslots; i++)
		if (strcmp(lr->slot[i].token, token) == 0)
			return &lr->slot[i];
	if (lr->nslots == LOGRATE_SLOTS)
		return &lr->other;
	s = &lr->slot[lr->nslots++];
	memcpy(s->token, token, len + 1);
	s->start = now_ms;
	return s;
}

bool
lograte_admit(struct lograte *lr, const char *token, uint64_t now_ms)
{
	struct lograte_slot *s = slot_for(lr, token, now_ms);

	/*
	 * A new window only once the last one's count was summarised: until
	 * lograte_due() takes it, late events join it instead of being
	 * logged, so the summary says how many were not.
	 */
	if (s->suppressed == 0 && elapsed(s, now_ms) >= LOGRATE_WINDOW_MS) {
		s->start = now_ms;
		s->full = 0;
	}
	if (s->full < lr->burst) {
		s->full++;
		return true;
	}
	s->suppressed++;
	return false;
}

bool
lograte_due(struct lograte *lr, uint64_t now_ms, bool all,
    struct lograte_summary *ret)
{
	unsigned i;

	for (i = 0; i <= lr->nslots; i++) {
		struct lograte_slot *s = i < lr->nslots ? &lr->slot[i] :
		    &lr->other;

		if (s->suppressed == 0 ||
		    (!all && elapsed(s, now_ms) < LOGRATE_WINDOW_MS))
			continue;
		ret->token = s->token;
		ret->suppressed = s->suppressed;
		ret->span_ms = elapsed(s, now_ms);
		s->suppressed = 0;
		s->full = 0;
		s->start = now_ms;
		return true;
	}
	return false;
}
