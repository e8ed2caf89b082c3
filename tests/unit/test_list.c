/* Tests src/list.h: order of head and tail inserts, removal from every position, removal while walking,
 * and that a removed node is left unlinked. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "list.h"

struct item {
  int id;
  struct ps_list node; /* not the first member: ps_list_entry must subtract the offset */
};

/* The ids of the list in iteration order, as a string of digits ("" when empty). */
static const char *ids(const struct ps_list *head) {
  static char out[32];
  size_t n = 0;
  ps_list_foreach(node, head) {
    cr_assert_lt(n, sizeof out - 1);
    out[n++] = (char)('0' + ps_list_entry(node, struct item, node)->id);
  }
  out[n] = '\0';
  return out;
}

/* The ids walking backwards through prev, to check both directions stay consistent. */
static const char *ids_backwards(const struct ps_list *head) {
  static char out[32];
  size_t n = 0;
  for (const struct ps_list *node = head->prev; node != head; node = node->prev) {
    cr_assert_lt(n, sizeof out - 1);
    out[n++] = (char)('0' + ps_list_entry(node, const struct item, node)->id);
  }
  out[n] = '\0';
  return out;
}

static void fill(struct ps_list *head, struct item *items, int n) {
  ps_list_init(head);
  for (int i = 0; i < n; i++) {
    items[i].id = i;
    ps_list_insert_tail(head, &items[i].node);
  }
}

Test(list, empty) {
  struct ps_list head;
  ps_list_init(&head);
  cr_assert(ps_list_empty(&head));
  cr_assert_null(ps_list_first(&head));
  cr_assert_str_eq(ids(&head), "");
}

Test(list, zeroed_head_is_an_empty_list) {
  struct ps_list head = {0};
  cr_assert(ps_list_empty(&head));
  cr_assert_null(ps_list_first(&head));
  cr_assert_str_eq(ids(&head), "");
  int walked = 0;
  ps_list_foreach_safe(node, tmp, &head) walked++;
  cr_assert_eq(walked, 0);
  struct item a = {.id = 1}, b = {.id = 2};
  ps_list_insert_tail(&head, &a.node);
  struct ps_list other = {0};
  ps_list_insert_head(&other, &b.node);
  cr_assert_str_eq(ids(&head), "1");
  cr_assert_str_eq(ids(&other), "2");
  ps_list_remove(&a.node);
  cr_assert(ps_list_empty(&head));
  cr_assert_eq(head.next, &head, "an emptied head is self-linked, not zeroed again");
}

Test(list, insert_head_walks_newest_first) {
  struct ps_list head;
  struct item it[3];
  ps_list_init(&head);
  for (int i = 0; i < 3; i++) {
    it[i].id = i;
    ps_list_insert_head(&head, &it[i].node);
  }
  cr_assert_not(ps_list_empty(&head));
  cr_assert_eq(ps_list_first(&head), &it[2].node);
  cr_assert_str_eq(ids(&head), "210");
  cr_assert_str_eq(ids_backwards(&head), "012");
}

Test(list, insert_tail_walks_in_order) {
  struct ps_list head;
  struct item it[4];
  fill(&head, it, 4);
  cr_assert_eq(ps_list_first(&head), &it[0].node);
  cr_assert_eq(head.prev, &it[3].node);
  cr_assert_str_eq(ids(&head), "0123");
  cr_assert_str_eq(ids_backwards(&head), "3210");
}

Test(list, remove_first_middle_last_and_only) {
  struct ps_list head;
  struct item it[4];
  fill(&head, it, 4);
  ps_list_remove(&it[0].node);
  cr_assert_str_eq(ids(&head), "123");
  ps_list_remove(&it[2].node);
  cr_assert_str_eq(ids(&head), "13");
  cr_assert_str_eq(ids_backwards(&head), "31");
  ps_list_remove(&it[3].node);
  cr_assert_str_eq(ids(&head), "1");
  cr_assert_eq(head.prev, &it[1].node);
  ps_list_remove(&it[1].node);
  cr_assert(ps_list_empty(&head));
  cr_assert_eq(head.prev, &head);
}

Test(list, removed_node_is_self_linked_and_removing_again_is_harmless) {
  struct ps_list head;
  struct item it[2];
  fill(&head, it, 2);
  ps_list_remove(&it[0].node);
  cr_assert_eq(it[0].node.next, &it[0].node);
  cr_assert_eq(it[0].node.prev, &it[0].node);
  ps_list_remove(&it[0].node);
  cr_assert_str_eq(ids(&head), "1");
  /* A removed node can be inserted again, in another position. */
  ps_list_insert_tail(&head, &it[0].node);
  cr_assert_str_eq(ids(&head), "10");
}

Test(list, foreach_safe_removes_while_walking) {
  struct ps_list head;
  struct item it[6];
  fill(&head, it, 6);
  /* Drop the even ids, as a sweep does. */
  int seen = 0;
  ps_list_foreach_safe(node, tmp, &head) {
    struct item *i = ps_list_entry(node, struct item, node);
    cr_assert_eq(i->id, seen++, "every node is visited once, in order");
    if (i->id % 2 == 0) ps_list_remove(node);
  }
  cr_assert_eq(seen, 6);
  cr_assert_str_eq(ids(&head), "135");
  /* Remove everything, freeing as it goes. */
  struct ps_list heap;
  ps_list_init(&heap);
  for (int i = 0; i < 5; i++) {
    struct item *p = malloc(sizeof *p);
    cr_assert_not_null(p);
    p->id = i;
    ps_list_insert_head(&heap, &p->node);
  }
  ps_list_foreach_safe(node, tmp, &heap) {
    ps_list_remove(node);
    free(ps_list_entry(node, struct item, node));
  }
  cr_assert(ps_list_empty(&heap));
}

Test(list, drain_from_the_front) {
  struct ps_list head;
  struct item it[3];
  fill(&head, it, 3);
  int order = 0;
  for (struct ps_list *n; (n = ps_list_first(&head)) != NULL;) {
    cr_assert_eq(ps_list_entry(n, struct item, node)->id, order++);
    ps_list_remove(n);
  }
  cr_assert_eq(order, 3);
}
