#ifndef LATCHKEY_CFASTCGI_SHIM_H
#define LATCHKEY_CFASTCGI_SHIM_H
#include <fcgiapp.h>
#endif
