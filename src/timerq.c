/*
 * timerq: one worker's deadlines, in a binary min-heap keyed by entry->key.
 */
#include "timerq.h"

#include <stdlib.h>

void
timerq_init(struct timerq *q)
{
	q->heap = NULL;
	q->n = q->cap = 0;
}

void
timerq_free(struct timerq *q)
{
	free(q->heap);
	timerq_init(q);
}

int
timerq_reserve(struct timerq *q, size_t n)
{
	struct timerq_entry **h;
	size_t cap;

	if (n <= q->cap)
		return 0;
	cap = q->cap ? q->cap : 64;
	while (cap < n)
		cap *= 2;
	if ((h = realloc(q->heap, cap * sizeof(*h))) == NULL)
		return -1;
	q->heap = h;
	q->cap = cap;
	return 0;
}

static void
place(struct timerq *q, size_t i, struct timerq_entry *e)
{
	q->heap[i] = e;
	e->pos = i + 1;
}

static void
sift_up(struct timerq *q, size_t i)
{
	struct timerq_entry *e = q->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (q->heap[parent]->key <= e->key)
			break;
		place(q, i, q->heap[parent]);
		i = parent;
	}
	place(q, i, e);
}

static void
sift_down(struct timerq *q, size_t i)
{
	struct timerq_entry *e = q->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= q->n)
			break;
		if (c + 1 < q->n && q->heap[c + 1]->key < q->heap[c]->key)
			c++;
		if (e->key <= q->heap[c]->key)
			break;
		place(q, i, q->heap[c]);
		i = c;
	}
	place(q, i, e);
}

static void
remove_at(struct timerq *q, size_t i)
{
	struct timerq_entry *e = q->heap[i], *last = q->heap[--q->n];

	e->pos = 0;
	if (i == q->n)
		return;
	place(q, i, last);
	if (i > 0 && q->heap[(i - 1) / 2]->key > last->key)
		sift_up(q, i);
	else
		sift_down(q, i);
}

void
timerq_set(struct timerq *q, struct timerq_entry *e, uint64_t due)
{
	e->due = due;
	if (due == 0) {
		if (e->pos != 0)
			remove_at(q, e->pos - 1);
		return;
	}
	if (e->pos == 0) {
		/* Room was reserved by the owner (timerq_reserve). */
		if (q->n >= q->cap)
			abort();
		e->key = due;
		place(q, q->n++, e);
		sift_up(q, q->n - 1);
	} else if (due < e->key) {
		e->key = due;
		sift_up(q, e->pos - 1);
	}
	/* Later than its key: re-filed lazily by timerq_pop. */
}

uint64_t
timerq_next(const struct timerq *q)
{
	return q->n > 0 ? q->heap[0]->key : 0;
}

struct timerq_entry *
timerq_pop(struct timerq *q, uint64_t now)
{
	while (q->n > 0 && q->heap[0]->key <= now) {
		struct timerq_entry *e = q->heap[0];

		if (e->due > now) {
			/* Pushed later since it was filed: file it again. */
			e->key = e->due;
			sift_down(q, 0);
			continue;
		}
		remove_at(q, 0);
		return e;
	}
	return NULL;
}
