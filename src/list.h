/* An intrusive, circular, doubly linked list: the node is embedded in the object it links, so linking
 * never allocates and unlinking is O(1) given the node alone. A list is a head node that links to itself
 * when empty; the first element is head->next and the last head->prev.
 *
 *   struct conn { ...; struct ps_list node; };
 *   struct ps_list conns;                              // ps_list_init(&conns) before first use
 *   ps_list_insert_head(&conns, &c->node);
 *   ps_list_foreach(n, &conns) use(ps_list_entry(n, struct conn, node));
 *   ps_list_remove(&c->node);
 *
 * A head that is all zeroes (calloc, `= {0}`) is an empty list too, so a struct its users initialize with
 * designated initializers (struct ps_h2_server) needs no init call. A head must not move while the list
 * is not empty (its neighbours point at it). Nothing here frees or allocates: the owner of each object
 * says when it is linked and unlinked. */
#ifndef PS_LIST_H
#define PS_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ps_list {
  struct ps_list *prev, *next;
};

/* An empty list, or a node that is in no list (ps_list_remove leaves a node so too). */
static inline void ps_list_init(struct ps_list *l) { l->prev = l->next = l; }

static inline bool ps_list_empty(const struct ps_list *head) {
  return head->next == NULL || head->next == head;
}

/* The first node, or NULL when the list is empty. */
static inline struct ps_list *ps_list_first(const struct ps_list *head) {
  return ps_list_empty(head) ? NULL : head->next;
}

/* Where a walk starts: the first node, or the head itself when the list is empty (a zeroed head too). */
static inline struct ps_list *ps_list__begin(const struct ps_list *head) {
  return head->next != NULL ? head->next : (struct ps_list *)head;
}

/* Links node between prev and next, which are adjacent. */
static inline void ps_list_link(struct ps_list *prev, struct ps_list *node, struct ps_list *next) {
  node->prev = prev;
  node->next = next;
  prev->next = node;
  next->prev = node;
}

/* Makes node the first element: iteration then meets the newest first. */
static inline void ps_list_insert_head(struct ps_list *head, struct ps_list *node) {
  if (head->next == NULL) ps_list_init(head);
  ps_list_link(head, node, head->next);
}

/* Makes node the last element: iteration then meets elements in insertion order (a FIFO queue). */
static inline void ps_list_insert_tail(struct ps_list *head, struct ps_list *node) {
  if (head->next == NULL) ps_list_init(head);
  ps_list_link(head->prev, node, head);
}

/* Unlinks node from its list and leaves it self-linked, so that removing it again does nothing. The
 * node must have been inserted or initialized (a zeroed node is neither). */
static inline void ps_list_remove(struct ps_list *node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  ps_list_init(node);
}

/* The object that embeds node as its member `member`. */
#define ps_list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* Walks the nodes of head in order, declaring `node` (a struct ps_list *) for the loop. The body must not
 * unlink the current node: use ps_list_foreach_safe for that. */
#define ps_list_foreach(node, head)                                                                          \
  for (struct ps_list *node = ps_list__begin(head); node != (head); node = node->next)

/* The same, with the next node read before the body runs, so the body may unlink (or free) the current
 * node. It must not unlink the saved next one. */
#define ps_list_foreach_safe(node, tmp, head)                                                                \
  for (struct ps_list *node = ps_list__begin(head), *tmp = node->next; node != (head);                       \
       node = tmp, tmp = node->next)

#endif
