/* Lua's heap with per-state free lists (src/lua/lheap.c): blocks are reused within their size class, contents
 * survive moves between classes and to and from malloc, a block made by another allocator is never handed out
 * for more than it holds, and a Lua state runs on it. */
#include "check.h"
#include "lflame.h"
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

static void fill(unsigned char *p, size_t n, unsigned char v) { for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(v + i); }
static bool same(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(v + i)) return false;
  return true;
}

int main(void) {
  lfl_heap *h = lfl_heap_new();
  CHECK(h != NULL, "lfl_heap_new");

  void *a = lfl_heap_realloc(h, NULL, 0, 40);
  fill(a, 40, 1);
  lfl_heap_realloc(h, a, 40, 0);
  void *b = lfl_heap_realloc(h, NULL, 0, 48); /* 33..48: the class of 40 */
  CHECK(b == a, "a block freed at 40 bytes serves a request of 48");
  void *c = lfl_heap_realloc(h, b, 48, 36);
  CHECK(c == b, "a resize within the class keeps the block");
  fill(c, 36, 7);
  void *d = lfl_heap_realloc(h, c, 36, 200); /* another class */
  CHECK(d != c && same(d, 36, 7), "growing into another class moves the block with its contents");
  void *e = lfl_heap_realloc(h, d, 200, 5000); /* to malloc */
  CHECK(same(e, 36, 7), "growing past the small sizes keeps the contents");
  fill(e, 5000, 3);
  void *f = lfl_heap_realloc(h, e, 5000, 100); /* back to a class */
  CHECK(same(f, 100, 3), "shrinking into a class keeps the contents");
  lfl_heap_realloc(h, f, 100, 0);

  void *foreign = malloc(17); /* glibc: 24 usable bytes, less than the 32 of its class */
  lfl_heap_realloc(h, foreign, 17, 0);
  void *g = lfl_heap_realloc(h, NULL, 0, 32);
  CHECK(g != foreign, "a block smaller than its class (made by malloc) is not handed out for the class's size");
  lfl_heap_realloc(h, g, 32, 0);
  lfl_heap_free(h);

  /* a state on the allocator: tables, strings and closures made and collected */
  h = lfl_heap_new();
  lua_State *L = lua_newstate(lfl_heap_lua_alloc, h);
  CHECK(L != NULL, "lua_newstate on the heap");
  luaL_openlibs(L);
  int st = luaL_dostring(L, "local keep = {}\n"
                            "for i = 1, 200000 do\n"
                            "  local t = {i, tostring(i), function() return i end}\n"
                            "  if i % 1000 == 0 then keep[#keep + 1] = t end\n"
                            "end\n"
                            "local s = 0\n"
                            "for j, t in ipairs(keep) do s = s + t[1] + #t[2] + t[3]() end\n"
                            "local want = 0\n"
                            "for i = 1000, 200000, 1000 do want = want + 2 * i + #tostring(i) end\n"
                            "assert(#keep == 200 and s == want)\n");
  CHECK(st == LUA_OK, "a script churning tables, strings and closures: %s", st == LUA_OK ? "ok" : lua_tostring(L, -1));
  lua_close(L);
  lfl_heap_free(h);

  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
