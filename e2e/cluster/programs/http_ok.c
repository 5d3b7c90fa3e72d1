/* Answers every HTTP request on port 8080 with "ok": the smallest server whose pod a test of
 * the real node can reach on its pod IP and through a Service. Built with gcc -static into an
 * image of its own by e2e/cluster/static_images.py. */
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static void stop(int signal_number) {
  (void)signal_number;
  _exit(0);
}

int main(void) {
  static const char reply[] =
      "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
      "Connection: close\r\n\r\nok\n";
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(8080)};
  int one = 1;
  int server = socket(AF_INET, SOCK_STREAM, 0);
  signal(SIGTERM, stop);
  signal(SIGPIPE, SIG_IGN);
  setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (server < 0 || bind(server, (struct sockaddr *)&address, sizeof address) != 0 ||
      listen(server, 64) != 0) {
    return 1;
  }
  for (;;) {
    char request[4096];
    int client = accept(server, 0, 0);
    if (client < 0) {
      continue;
    }
    if (read(client, request, sizeof request) > 0) {
      (void)!write(client, reply, sizeof reply - 1);
    }
    close(client);
  }
}
